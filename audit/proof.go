package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
)

func checkFailed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCheckFailed, fmt.Sprintf(format, args...))
}

// SignedCheckpoint is a signed checkpoint of the log, and, from a running
// hubd, the verifier key of the key it signs with.
type SignedCheckpoint struct {
	checkpoint.Checkpoint
	Note []byte
	// VerifierKey is the hub's verifier key (empty from a file: a ledger
	// file does not hold its key). Take the key an auditor uses from a
	// copy kept off the host, not from the hub under audit.
	VerifierKey string
}

// Checkpoint returns the newest signed checkpoint stored in the ledger.
func (e *Engine) Checkpoint(ctx context.Context) (SignedCheckpoint, error) {
	if err := ctx.Err(); err != nil {
		return SignedCheckpoint{}, err
	}
	cp, ok, err := e.store.LastCheckpoint()
	if err != nil {
		return SignedCheckpoint{}, err
	}
	if !ok {
		return SignedCheckpoint{}, ErrNoCheckpoint
	}
	c, err := checkpoint.Parse(cp.Signed)
	if err != nil {
		return SignedCheckpoint{}, err
	}
	return SignedCheckpoint{Checkpoint: c, Note: cp.Signed, VerifierKey: e.verifierKey}, nil
}

// BundleFormat names the proof bundle's format and version.
const BundleFormat = "sessionledger-proof/v1"

// Bundle is a self-contained proof that one record is in the log: the
// record as exported, its leaf data (the exact bytes the tree hashes), its
// leaf index, the RFC 6962 inclusion proof, and the signed checkpoint whose
// tree it is in. CheckBundle verifies it with no ledger at hand.
type Bundle struct {
	Format string `json:"format"`
	// LogID is the log's id, the checkpoint's origin.
	LogID string `json:"log_id"`
	Seq   uint64 `json:"seq"`
	// LeafIndex is Seq-1.
	LeafIndex uint64 `json:"leaf_index"`
	// Record is the record as auditq export writes it (its "hash" is the
	// chain hash, which the bundle does not prove).
	Record json.RawMessage `json:"record"`
	// Leaf is the leaf data, base64: the record's format byte and its
	// protobuf, as stored. The leaf hash is SHA-256(0x00 || Leaf).
	Leaf []byte `json:"leaf"`
	// InclusionProof is the audit path from the leaf to the checkpoint's
	// root, base64 hashes.
	InclusionProof [][]byte `json:"inclusion_proof"`
	// Checkpoint is the signed checkpoint (a C2SP tlog-checkpoint note).
	Checkpoint string `json:"checkpoint"`
}

// Marshal is the bundle as the file auditq prove writes: indented JSON.
func (b *Bundle) Marshal() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// ParseBundle reads a bundle file.
func ParseBundle(data []byte) (*Bundle, error) {
	var b Bundle
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&b); err != nil {
		return nil, invalid("not a proof bundle: %v", err)
	}
	if b.Format != BundleFormat {
		return nil, invalid("not a proof bundle of format %s (format %q)", BundleFormat, b.Format)
	}
	return &b, nil
}

// ProveQuery names the record to prove (Seq, or the event id EventID) and
// the signed checkpoint whose tree to prove it in (nil: the newest one the
// ledger holds).
type ProveQuery struct {
	Seq        uint64
	EventID    ulid.ULID
	Checkpoint []byte
}

// Prove builds the proof bundle of one record. The checkpoint must be of
// this log and agree with it (origin, size within the log, root), and
// include the record.
func (e *Engine) Prove(ctx context.Context, q ProveQuery) (*Bundle, error) {
	if q.Seq == 0 && q.EventID == (ulid.ULID{}) {
		return nil, invalid("give --seq or --event")
	}
	if q.Seq != 0 && q.EventID != (ulid.ULID{}) {
		return nil, invalid("give --seq or --event, not both")
	}
	signed := q.Checkpoint
	if signed == nil {
		sc, err := e.Checkpoint(ctx)
		if err != nil {
			return nil, err
		}
		signed = sc.Note
	}
	c, err := checkpoint.Parse(signed)
	if err != nil {
		return nil, invalid("--checkpoint: %v", err)
	}
	if err := e.checkOwn(c); err != nil {
		return nil, err
	}
	seq := q.Seq
	if seq == 0 {
		if seq, err = e.seqOfID(ctx, q.EventID); err != nil {
			return nil, err
		}
	}
	if seq > c.Size {
		return nil, invalid("seq %d is not in the checkpoint's tree (size %d): prove it in a later checkpoint", seq, c.Size)
	}
	rec, err := e.store.Get(seq)
	if err != nil {
		return nil, err
	}
	leaf, err := e.store.Leaf(seq)
	if err != nil {
		return nil, err
	}
	_, proof, err := e.store.InclusionProof(seq, c.Size)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Format: BundleFormat, LogID: c.Origin, Seq: seq, LeafIndex: seq - 1,
		Record: AppendJSON(nil, rec, time.UTC), Leaf: leaf, Checkpoint: string(signed)}
	for _, h := range proof {
		b.InclusionProof = append(b.InclusionProof, append([]byte(nil), h[:]...))
	}
	return b, nil
}

// checkOwn reports a checkpoint that is not of this log or disagrees with
// it (a mismatch, not a failed check: prove needs one of this log).
func (e *Engine) checkOwn(c checkpoint.Checkpoint) error {
	if id := e.store.LogID(); c.Origin != id {
		return invalid("the checkpoint is of log %q, this ledger's log is %q", c.Origin, id)
	}
	root, err := e.store.TreeRoot(c.Size)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("%w: the checkpoint is of %d records, the log holds %d (run verify --checkpoint)", ledger.ErrCorrupt, c.Size, e.store.Head().Seq)
	}
	if err != nil {
		return err
	}
	if root != c.Root {
		return fmt.Errorf("%w: the log's tree at size %d is not the checkpoint's (run verify --checkpoint)", ledger.ErrCorrupt, c.Size)
	}
	return nil
}

// seqOfID finds the seq of the record whose id is id: ids grow with seq,
// and an id's first 48 bits are its time in ms, so a time search lands on
// or just before it.
func (e *Engine) seqOfID(ctx context.Context, id ulid.ULID) (uint64, error) {
	from, err := e.seqAtTime(ctx, ulid.Time(id.Time()))
	if err != nil {
		return 0, err
	}
	var found uint64
	err = e.store.ScanRaw(ctx, from, 0, func(r *ledger.RawRecord) error {
		switch r.ID.Compare(id) {
		case 0:
			found = r.Seq
			return ledger.ErrStop
		case 1:
			return ledger.ErrStop
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if found == 0 {
		return 0, fmt.Errorf("%w: no record has id %s", ledger.ErrNotFound, id)
	}
	return found, nil
}

// Consistency is a consistency proof between two tree sizes of the log.
type Consistency struct {
	Old, New ledger.TreeHead
	Proof    []ledger.Hash
}

// ConsistencyProof returns the proof that the log's tree of newSize
// records extends its tree of oldSize records, with both roots from the
// stored tree.
func (e *Engine) ConsistencyProof(ctx context.Context, oldSize, newSize uint64) (Consistency, error) {
	if err := ctx.Err(); err != nil {
		return Consistency{}, err
	}
	if oldSize > newSize {
		return Consistency{}, invalid("the older checkpoint (size %d) is larger than the newer (size %d)", oldSize, newSize)
	}
	var c Consistency
	var err error
	c.Old.Size, c.New.Size = oldSize, newSize
	if c.Old.Root, err = e.store.TreeRoot(oldSize); err != nil {
		return c, err
	}
	if c.New.Root, err = e.store.TreeRoot(newSize); err != nil {
		return c, err
	}
	c.Proof, err = e.store.ConsistencyProof(oldSize, newSize)
	return c, err
}

// BundleCheck is what CheckBundle verified.
type BundleCheck struct {
	Checkpoint checkpoint.Checkpoint
	Record     *ledger.Record
	// Signer is the name of the key the checkpoint is signed by.
	Signer string
}

// CheckBundle verifies a proof bundle with no ledger: the checkpoint's
// signature by verifierKey, that it is of the bundle's log, that the leaf
// is at its index in the checkpoint's tree (inclusion proof), and that the
// record shown is the one the leaf holds. A bundle that does not hold is
// ErrCheckFailed, saying which part failed.
func CheckBundle(b *Bundle, verifierKey string) (BundleCheck, error) {
	var res BundleCheck
	c, err := checkpoint.Open([]byte(b.Checkpoint), verifierKey)
	if errors.Is(err, checkpoint.ErrSignature) {
		return res, checkFailed("the bundle's checkpoint: %v", err)
	}
	if err != nil {
		return res, invalid("the bundle's checkpoint: %v", err)
	}
	res.Checkpoint = c
	res.Signer = signerName(verifierKey)
	if c.Origin != b.LogID {
		return res, checkFailed("the checkpoint is of log %q, the bundle says log %q", c.Origin, b.LogID)
	}
	if b.Seq == 0 || b.LeafIndex != b.Seq-1 {
		return res, checkFailed("leaf index %d does not go with seq %d (leaf index = seq - 1)", b.LeafIndex, b.Seq)
	}
	proof := make([]ledger.Hash, len(b.InclusionProof))
	for i, h := range b.InclusionProof {
		if len(h) != len(ledger.Hash{}) {
			return res, checkFailed("inclusion proof hash %d is %d bytes, not 32", i, len(h))
		}
		copy(proof[i][:], h)
	}
	if err := ledger.CheckInclusion(proof, c.TreeHead, b.Seq, ledger.LeafHash(b.Leaf)); err != nil {
		return res, checkFailed("the record's leaf is not leaf %d of the checkpoint's tree (size %d): the record or the proof was changed (%v)", b.LeafIndex, c.Size, err)
	}
	rec, err := ledger.DecodeLeaf(b.Seq, b.Leaf)
	if err != nil {
		return res, checkFailed("the leaf does not decode as the record at seq %d: %v", b.Seq, err)
	}
	// The record shown must be the leaf's, rendered the same way; its
	// chain hash is not in the leaf, so it is taken from what is shown.
	var shown struct {
		Hash string `json:"hash"`
	}
	if err := json.Unmarshal(b.Record, &shown); err != nil {
		return res, checkFailed("the record shown is not JSON: %v", err)
	}
	if h, err := hex.DecodeString(shown.Hash); err == nil && len(h) == len(rec.Hash) {
		copy(rec.Hash[:], h)
	}
	var got, want bytes.Buffer
	if json.Compact(&got, b.Record) != nil || json.Compact(&want, AppendJSON(nil, rec, time.UTC)) != nil || !bytes.Equal(got.Bytes(), want.Bytes()) {
		return res, checkFailed("the record shown differs from the record the proven leaf holds: it was edited (the leaf holds %s)", want.String())
	}
	res.Record = rec
	return res, nil
}

// signerName is the key name of a verifier key ("name+hash+key").
func signerName(vkey string) string {
	for i := 0; i < len(vkey); i++ {
		if vkey[i] == '+' {
			return vkey[:i]
		}
	}
	return vkey
}

// b64 is standard base64, as a checkpoint's root line.
func b64(h []byte) string { return base64.StdEncoding.EncodeToString(h) }
