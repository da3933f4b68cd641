package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/projections"
	"github.com/sessionledger/sessionledger/projections/projpb"
)

// VerifyQuery is the range to verify: seqs From..To (0 leaves a side open),
// narrowed by a time window when Since or Until is set. Without a range
// the whole log is verified, and more than the chain (see Verify).
type VerifyQuery struct {
	From, To     uint64
	Since, Until time.Time
	// Checkpoints are signed checkpoints to check the log against (whole
	// log only). Their signatures are the caller's to check (auditq does,
	// with the key it is given): Verify compares what they say with the
	// log.
	Checkpoints []checkpoint.Checkpoint
}

// whole reports whether q asks for the whole log.
func (q *VerifyQuery) whole() bool {
	return q.From == 0 && q.To == 0 && q.Since.IsZero() && q.Until.IsZero()
}

// CheckpointResult is what the log says about one checkpoint.
type CheckpointResult struct {
	Checkpoint checkpoint.Checkpoint
	// OK: the log holds at least its size, its tree there has its root,
	// and the stored tree proves the head consistent with it.
	OK bool
	// Problem says what differs when it is not OK.
	Problem string
}

// VerifyResult is the outcome of a verification.
type VerifyResult struct {
	// From and To are the seqs checked, Checked how many records.
	From, To, Checked uint64
	// Head is the ledger's head when verification began; its hash is what
	// an operator writes down (or signs) to detect a later rewrite.
	Head ledger.Head
	// Broken is the first bad seq and why; nil when the range is intact.
	Broken *ledger.ChainError

	// Whole is set when the whole log was verified: then the Merkle tree
	// was recomputed from the records (Root), compared with the stored
	// tree (TreeDamage) and the checkpoints, and the rest of the file
	// cross-checked (Findings).
	Whole bool
	// Root is the tree root recomputed from the records 1 to To.
	Root ledger.Hash
	// TreeDamage is the first place the stored tree disagrees with the
	// records, or covers other records than the log holds.
	TreeDamage *ledger.ChainError
	// StoredTree is whether the file has a stored tree to compare (a
	// format-2 file, from before the tree, has none).
	StoredTree bool
	// Findings are the entries of the file that name a seq the log
	// contradicts: index postings, consumer-group offsets, stored
	// checkpoints, projection checkpoint and snapshots.
	Findings []ledger.Finding
	// Checkpoints is one result per checkpoint asked about.
	Checkpoints []CheckpointResult
}

// Intact reports whether everything verified: the chain, and for the whole
// log the stored tree, the cross-checks and every checkpoint.
func (r VerifyResult) Intact() bool {
	if r.Broken != nil || r.TreeDamage != nil || len(r.Findings) > 0 {
		return false
	}
	for _, c := range r.Checkpoints {
		if !c.OK {
			return false
		}
	}
	return true
}

// VerifyProgress is how far a verification has got: Seq is the last seq
// checked, of From to To (the range once its times are resolved to seqs).
type VerifyProgress struct {
	From, To, Seq uint64
}

// Verify recomputes the hash chain over the range and reports the first bad
// seq. progress, if set, is called now and then with how far it has got,
// from inside a read transaction of the scan: it must return quickly and
// never wait for a client (see Server.Verify).
// A broken chain is a result; the error is for a verification that could not
// run. A range that starts past the head or ends before it starts is
// ErrInvalid; a time window with no record in it is an empty result.
//
// For the whole log (no range) it also recomputes the Merkle tree from the
// records and compares it with the stored tree, checks each of
// q.Checkpoints (its origin is this log, the log holds at least its size,
// the recomputed tree at that size has its root, and the stored tree
// proves the head consistent with it), and cross-checks the rest of the
// file (ledger.Store.CrossCheck, and the projection checkpoint and
// snapshots: their seq and the record hash they are stamped with).
func (e *Engine) Verify(ctx context.Context, q VerifyQuery, progress func(VerifyProgress)) (VerifyResult, error) {
	if q.whole() {
		return e.verifyWhole(ctx, q, progress)
	}
	if len(q.Checkpoints) > 0 {
		return VerifyResult{}, invalid("--checkpoint checks the whole log: give no --from or --to")
	}
	head := e.store.Head()
	res := VerifyResult{Head: head, From: q.From, To: q.To}
	switch {
	case q.From != 0 && q.To != 0 && q.From > q.To:
		return res, invalid("--from %d is after --to %d", q.From, q.To)
	case q.From > head.Seq:
		return res, invalid("--from %d is past the log's head (seq %d)", q.From, head.Seq)
	}
	if res.From == 0 {
		res.From = 1
	}
	if res.To == 0 || res.To > head.Seq {
		res.To = head.Seq
	}
	if !q.Since.IsZero() || !q.Until.IsZero() {
		if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
			return res, invalid("--to is not after --from")
		}
		from, to, empty, err := e.seqRange(ctx, q.Since, q.Until)
		if err != nil {
			return res, err
		}
		if !q.Since.IsZero() && from > head.Seq {
			return res, invalid("--from %s is after the log's last record (seq %d at %s)",
				q.Since.UTC().Format(time.RFC3339Nano), head.Seq, head.Time.UTC().Format(time.RFC3339Nano))
		}
		if empty {
			res.From = max(res.From, from)
			res.To = res.From - 1
			return res, nil // no record in the window
		}
		res.From = max(res.From, from)
		if to != 0 {
			res.To = min(res.To, to)
		}
	}
	if res.From > res.To+1 {
		// A seq on one side and a time on the other, in the wrong order.
		return res, invalid("the range ends (seq %d) before it starts (seq %d)", res.To, res.From)
	}
	if res.From > res.To {
		return res, nil // nothing to check
	}
	var p ledger.VerifyProgress
	if progress != nil {
		p = func(seq uint64) { progress(VerifyProgress{From: res.From, To: res.To, Seq: seq}) }
	}
	n, err := e.store.Verify(ctx, res.From, res.To, p)
	res.Checked = n
	var ce *ledger.ChainError
	if errors.As(err, &ce) {
		res.Broken = ce
		return res, nil
	}
	return res, err
}

// verifyWhole is Verify of the whole log.
func (e *Engine) verifyWhole(ctx context.Context, q VerifyQuery, progress func(VerifyProgress)) (VerifyResult, error) {
	res := VerifyResult{Whole: true, Head: e.store.Head(), From: 1, StoredTree: e.store.Format() >= 3}
	if len(q.Checkpoints) > 0 && e.store.Format() < 3 {
		return res, invalid("%v: this file has no log id to check checkpoints' origin against", ledger.ErrNoTree)
	}
	sizes := make([]uint64, len(q.Checkpoints))
	for i, c := range q.Checkpoints {
		sizes[i] = c.Size
	}
	var p ledger.VerifyProgress
	if progress != nil {
		head := res.Head.Seq
		p = func(seq uint64) { progress(VerifyProgress{From: 1, To: head, Seq: seq}) }
	}
	tc, err := e.store.VerifyTree(ctx, sizes, p)
	if err != nil {
		return res, err
	}
	res.Head, res.To, res.Checked = tc.Head, tc.Head.Seq, tc.Checked
	res.Broken, res.TreeDamage, res.Root = tc.Broken, tc.TreeDamage, tc.Root
	if res.Findings, err = e.store.CrossCheckAfter(ctx, &tc, 100); err != nil {
		return res, err
	}
	snaps, err := e.snapshotFindings()
	if err != nil {
		return res, err
	}
	res.Findings = append(res.Findings, snaps...)
	for _, c := range q.Checkpoints {
		res.Checkpoints = append(res.Checkpoints, e.checkCheckpoint(c, &tc))
	}
	return res, nil
}

// checkCheckpoint compares one checkpoint with the log as VerifyTree
// recomputed it.
func (e *Engine) checkCheckpoint(c checkpoint.Checkpoint, tc *ledger.TreeCheck) CheckpointResult {
	r := CheckpointResult{Checkpoint: c}
	short := func(h ledger.Hash) string { return b64(h[:]) }
	switch root, ok := tc.Roots[c.Size]; {
	case c.Origin != e.store.LogID():
		r.Problem = fmt.Sprintf("the checkpoint is of log %q; this ledger's log is %q", c.Origin, e.store.LogID())
	case c.Size > tc.Checked && tc.Checked < tc.Head.Seq:
		r.Problem = fmt.Sprintf("the log cannot be read past seq %d (%s), and the checkpoint covers %d records", tc.Checked, tc.Broken, c.Size)
	case c.Size > tc.Checked:
		r.Problem = fmt.Sprintf("the log holds %d records, the checkpoint %d: records %d to %d were removed (the log was truncated)", tc.Checked, c.Size, tc.Checked+1, c.Size)
	case c.Size == 0 && c.Root != ledger.EmptyRoot, c.Size > 0 && (!ok || root != c.Root):
		if c.Size == 0 {
			root = ledger.EmptyRoot
		}
		r.Problem = fmt.Sprintf("the tree of the log's first %d records has root %s, the checkpoint %s: a record at or before seq %d was changed, removed or reordered",
			c.Size, short(root), short(c.Root), c.Size)
		if d := tc.TreeDamage; d != nil && d.Seq <= c.Size {
			r.Problem += fmt.Sprintf(" (the stored tree points at seq %d: %s)", d.Seq, d.Reason)
		}
	default:
		r.OK = true
		if tc.TreeDamage != nil || e.store.Format() < 3 {
			return r // the recomputed roots prove it; the stored tree cannot
		}
		proof, err := e.store.ConsistencyProof(c.Size, tc.Head.Seq)
		if err == nil {
			err = ledger.CheckConsistency(proof, c.TreeHead, ledger.TreeHead{Size: tc.Head.Seq, Root: tc.Root})
		}
		if err != nil {
			r.OK = false
			r.Problem = fmt.Sprintf("the head (seq %d) is not proven consistent with it: %v", tc.Head.Seq, err)
		}
	}
	return r
}

// snapshotFindings checks the projection checkpoint and snapshots stored in
// the ledger: each names a seq (at most the head) and is stamped with the
// chain hash of the record there.
func (e *Engine) snapshotFindings() ([]ledger.Finding, error) {
	var out []ledger.Finding
	err := e.store.Blobs("projections/", func(key string, value []byte) error {
		if key != projections.CheckpointKey && !strings.HasPrefix(key, projections.SnapshotPrefix) {
			return nil
		}
		var pb projpb.Snapshot
		if err := proto.Unmarshal(value, &pb); err != nil {
			out = append(out, ledger.Finding{Where: "blob " + key, Problem: "does not decode: " + err.Error()})
			return nil
		}
		// A snapshot is stored after its seq is durable: the head read now
		// is at or past a genuine one's seq, even on a live hub.
		seq, where, head := pb.GetSeq(), "projection snapshot "+key, e.store.Head().Seq
		switch {
		case seq == 0:
		case seq > head:
			out = append(out, ledger.Finding{Where: where, Seq: seq, Problem: fmt.Sprintf("is of seq %d, past the log's head (seq %d): the records it summarizes were removed", seq, head)})
		default:
			rec, err := e.store.Get(seq)
			if err != nil {
				out = append(out, ledger.Finding{Where: where, Seq: seq, Problem: fmt.Sprintf("names a record the log does not give: %v", err)})
			} else if !bytes.Equal(rec.Hash[:], pb.GetRecordHash()) {
				out = append(out, ledger.Finding{Where: where, Seq: seq, Problem: "is stamped with another hash than the record's at its seq: the record (or the chain from there) was rewritten"})
			}
		}
		return nil
	})
	if errors.Is(err, ledger.ErrNoTree) {
		err = nil
	}
	return out, err
}
