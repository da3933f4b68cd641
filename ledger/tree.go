package ledger

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// The Merkle tree over the log (RFC 6962, as golang.org/x/mod/sumdb/tlog
// computes it; docs/verification.md).
//
// Leaf: record seq is leaf seq-1. Its data is the record's stored value
// after the 32-byte chain hash: the format version byte followed by the
// canonical protobuf eventpb.Record (seq, id, time, topic, ... as the
// writer encoded it). The leaf hash is SHA-256(0x00 || data), an interior
// node SHA-256(0x01 || left || right). The tree depends on the records'
// bytes only, not on the chain or on anything local: every replica of one
// log computes the same tree.
//
// Storage: tlog's stored hashes (every leaf hash and the hash of every
// complete subtree, about two per record) in bucket "tree", written in the
// records' own transaction. One commit's records own a contiguous run of
// stored-hash indexes, [StoredHashIndex(0, first), StoredHashIndex(0,
// last+1)), so a commit puts one value: key = the run's first index (8-byte
// big-endian), value = its hashes, 32 bytes each. The root at any size up
// to the head is then at most 1 + log₂ n reads away (tlog.TreeHash), as is
// any proof.

var (
	bucketTree        = []byte("tree")
	bucketCheckpoints = []byte("checkpoints")
	metaLogIDKey      = []byte("log_id")
)

// TreeHead is the Merkle tree of the log's first Size records: its root.
type TreeHead struct {
	Size uint64
	Root Hash
}

// LeafHash is the Merkle leaf hash of a record whose leaf data (LeafData,
// Store.Leaf) is data: SHA-256(0x00 || data).
func LeafHash(data []byte) Hash { return Hash(tlog.RecordHash(data)) }

// leafData is the leaf data of a stored record value: the bytes after its
// chain hash.
func leafData(value []byte) []byte { return value[hashSize:] }

// EmptyRoot is the root of the tree of no records, SHA-256 of nothing.
var EmptyRoot = Hash{
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
}

// frontier holds, per level, the last complete subtree's stored hash of a
// tree of n records: exactly what tlog reads to add record n
// (StoredHashesForRecordHash) and to compute the root of n (TreeHash). The
// writer keeps one in memory, so an append reads nothing from bbolt.
type frontier struct {
	n    int64
	have uint64 // bit l: level l holds a hash
	idx  [64]int64
	hash [64]tlog.Hash
	// buf is ReadHashes's result, reused: tlog reads it before its next
	// call. Copies of a frontier share it, and only one goroutine (the
	// writer, or one tree builder) uses a frontier and its copies.
	buf []tlog.Hash
}

var _ tlog.HashReader = (*frontier)(nil)

var errNotInFrontier = errors.New("ledger: tree hash not in the frontier")

// ReadHashes implements tlog.HashReader for the hashes tlog asks of a
// frontier.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	if cap(f.buf) < len(indexes) {
		f.buf = make([]tlog.Hash, 64)
	}
	out := f.buf[:len(indexes)]
	for i, x := range indexes {
		l, _ := tlog.SplitStoredHashIndex(x)
		if l >= 64 || f.have&(1<<l) == 0 || f.idx[l] != x {
			return nil, errNotInFrontier
		}
		out[i] = f.hash[l]
	}
	return out, nil
}

// add records the stored hashes of record n (its leaf first).
func (f *frontier) add(n int64, hs []tlog.Hash) {
	for l, h := range hs {
		f.idx[l] = tlog.StoredHashIndex(l, n>>l)
		f.hash[l] = h
		f.have |= 1 << l
	}
	f.n = n + 1
}

// append adds the record whose leaf hash is leaf and returns its stored
// hashes.
func (f *frontier) append(leaf tlog.Hash) ([]tlog.Hash, error) {
	hs, err := tlog.StoredHashesForRecordHash(f.n, leaf, f)
	if err != nil {
		return nil, err
	}
	f.add(f.n, hs)
	return hs, nil
}

// root is the tree's root.
func (f *frontier) root() (Hash, error) {
	h, err := tlog.TreeHash(f.n, f)
	return Hash(h), err
}

// frontierIndexes are the stored-hash indexes of the frontier of n records.
func frontierIndexes(n int64) (levels []int, indexes []int64) {
	for l := 0; l < 63 && n>>l > 0; l++ {
		levels = append(levels, l)
		indexes = append(indexes, tlog.StoredHashIndex(l, n>>l-1))
	}
	return levels, indexes
}

// loadFrontier reads the frontier of the tree of n records from r.
func loadFrontier(n int64, r tlog.HashReader) (frontier, error) {
	f := frontier{n: n}
	levels, idx := frontierIndexes(n)
	if len(idx) == 0 {
		return f, nil
	}
	hs, err := r.ReadHashes(idx)
	if err != nil {
		return f, err
	}
	for i, l := range levels {
		f.idx[l], f.hash[l] = idx[i], hs[i]
		f.have |= 1 << l
	}
	return f, nil
}

// bucketHashes reads stored hashes from the tree bucket of one transaction.
type bucketHashes struct{ b *bolt.Bucket }

var _ tlog.HashReader = bucketHashes{}

// ReadHashes implements tlog.HashReader.
func (r bucketHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	c := r.b.Cursor()
	for i, x := range indexes {
		v, off, err := seekStored(c, x)
		if err != nil {
			return nil, err
		}
		copy(out[i][:], v[off:off+hashSize])
	}
	return out, nil
}

// seekStored finds stored hash x: the value holding it and its offset.
func seekStored(c *bolt.Cursor, x int64) ([]byte, int, error) {
	if x < 0 {
		return nil, 0, fmt.Errorf("%w: stored tree hash %d", ErrCorrupt, x)
	}
	key := seqKey(uint64(x))
	k, v := c.Seek(key)
	if k == nil {
		k, v = c.Last()
	} else if string(k) > string(key) {
		k, v = c.Prev()
	}
	if k == nil || len(k) != 8 || len(v)%hashSize != 0 {
		return nil, 0, fmt.Errorf("%w: stored tree hash %d missing", ErrCorrupt, x)
	}
	start := binary.BigEndian.Uint64(k)
	off := (uint64(x) - start) * hashSize
	if off+hashSize > uint64(len(v)) {
		return nil, 0, fmt.Errorf("%w: stored tree hash %d missing", ErrCorrupt, x)
	}
	return v, int(off), nil
}

// storedCount is how many stored hashes the tree bucket holds, by its last
// value (the writer only ever appends).
func storedCount(b *bolt.Bucket) (int64, error) {
	k, v := b.Cursor().Last()
	if k == nil {
		return 0, nil
	}
	if len(k) != 8 || len(v)%hashSize != 0 {
		return 0, fmt.Errorf("%w: the last entry of the stored tree is malformed", ErrCorrupt)
	}
	return int64(binary.BigEndian.Uint64(k)) + int64(len(v)/hashSize), nil
}

// treeSizeOf is the number of records whose stored hashes number count,
// and whether count is such a number at all.
func treeSizeOf(count int64) (int64, bool) {
	// StoredHashCount is increasing and at least n.
	n := int64(sort.Search(int(count)+1, func(n int) bool { return tlog.StoredHashCount(int64(n)) >= count }))
	return n, tlog.StoredHashCount(n) == count
}

// TreeHead returns the tree at the head: its size (the head seq) and root.
// It is ErrNoTree on a format-2 file opened read-only.
func (s *Store) TreeHead() (TreeHead, error) {
	if err := s.needTree(); err != nil {
		return TreeHead{}, err
	}
	h := s.Head()
	return TreeHead{Size: h.Seq, Root: h.Root}, nil
}

func (s *Store) needTree() error {
	if s.Closed() {
		return ErrClosed
	}
	if s.format < 3 {
		return ErrNoTree
	}
	if d := s.treeDamage; d != nil {
		return fmt.Errorf("%w: %s", ErrCorrupt, d.Reason)
	}
	return nil
}

// treeView runs fn with the stored tree of a read transaction, for sizes
// up to the durable head (so the hashes it reads are durable ones).
func (s *Store) treeView(sizes []uint64, fn func(r tlog.HashReader) error) error {
	if err := s.needTree(); err != nil {
		return err
	}
	head := s.Head().Seq
	for _, n := range sizes {
		if n > head {
			return fmt.Errorf("%w: tree size %d is past the head (seq %d)", ErrNotFound, n, head)
		}
	}
	return s.view(func(tx *bolt.Tx) error {
		return fn(bucketHashes{tx.Bucket(bucketTree)})
	})
}

// TreeRoot returns the root of the tree of the log's first size records,
// from the stored tree. A size past the head is ErrNotFound.
func (s *Store) TreeRoot(size uint64) (Hash, error) {
	var root Hash
	err := s.treeView([]uint64{size}, func(r tlog.HashReader) error {
		h, err := tlog.TreeHash(int64(size), r)
		root = Hash(h)
		return err
	})
	return root, err
}

// InclusionProof returns the RFC 6962 inclusion proof (audit path) of the
// record at seq, leaf seq-1, in the tree of size records (size 0: the
// head), and that tree's root. Check it with CheckInclusion.
func (s *Store) InclusionProof(seq, size uint64) (TreeHead, []Hash, error) {
	if size == 0 {
		size = s.Head().Seq
	}
	if seq == 0 || seq > size {
		return TreeHead{}, nil, fmt.Errorf("%w: seq %d is not in the tree of size %d", ErrNotFound, seq, size)
	}
	var th TreeHead
	var proof []Hash
	err := s.treeView([]uint64{size}, func(r tlog.HashReader) error {
		root, err := tlog.TreeHash(int64(size), r)
		if err != nil {
			return err
		}
		p, err := tlog.ProveRecord(int64(size), int64(seq-1), r)
		if err != nil {
			return err
		}
		th = TreeHead{Size: size, Root: Hash(root)}
		proof = toHashes(p)
		return nil
	})
	return th, proof, err
}

// ConsistencyProof returns the RFC 6962 consistency proof that the tree of
// newSize records extends the tree of oldSize records. Check it with
// CheckConsistency.
func (s *Store) ConsistencyProof(oldSize, newSize uint64) ([]Hash, error) {
	if oldSize > newSize {
		return nil, fmt.Errorf("%w: tree size %d is after %d", ErrNotFound, oldSize, newSize)
	}
	var proof []Hash
	err := s.treeView([]uint64{newSize}, func(r tlog.HashReader) error {
		if oldSize == 0 {
			return nil // every tree extends the empty one: no hashes
		}
		p, err := tlog.ProveTree(int64(newSize), int64(oldSize), r)
		proof = toHashes(p)
		return err
	})
	return proof, err
}

// CheckInclusion reports whether proof proves that the leaf with hash leaf
// is leaf seq-1 of the tree th.
func CheckInclusion(proof []Hash, th TreeHead, seq uint64, leaf Hash) error {
	if seq == 0 || seq > th.Size {
		return fmt.Errorf("seq %d is not in a tree of size %d", seq, th.Size)
	}
	return tlog.CheckRecord(fromHashes(proof), int64(th.Size), tlog.Hash(th.Root), int64(seq-1), tlog.Hash(leaf))
}

// CheckConsistency reports whether proof proves that the tree newer
// extends the tree older.
func CheckConsistency(proof []Hash, older, newer TreeHead) error {
	if older.Size > newer.Size {
		return fmt.Errorf("the older tree (size %d) is larger than the newer one (size %d)", older.Size, newer.Size)
	}
	if older.Size == 0 {
		if older.Root != EmptyRoot || len(proof) != 0 {
			return errors.New("a tree of size 0 has the empty root and an empty proof")
		}
		return nil
	}
	return tlog.CheckTree(fromHashes(proof), int64(newer.Size), tlog.Hash(newer.Root), int64(older.Size), tlog.Hash(older.Root))
}

func toHashes[T ~[]tlog.Hash](p T) []Hash {
	out := make([]Hash, len(p))
	for i, h := range p {
		out[i] = Hash(h)
	}
	return out
}

func fromHashes(p []Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(p))
	for i, h := range p {
		out[i] = tlog.Hash(h)
	}
	return out
}

// Leaf returns a copy of the leaf data of the record at seq: the bytes the
// tree hashes (the format version byte and the record's protobuf), which
// DecodeLeaf turns back into the record.
func (s *Store) Leaf(seq uint64) ([]byte, error) {
	head, err := s.durableLimit(0)
	if err != nil {
		return nil, err
	}
	if seq == 0 || seq > head {
		return nil, fmt.Errorf("%w: seq %d", ErrNotFound, seq)
	}
	var out []byte
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLog).Get(seqKey(seq))
		if len(v) < headerSize {
			return fmt.Errorf("%w: seq %d missing or truncated", ErrCorrupt, seq)
		}
		out = append([]byte(nil), leafData(v)...)
		return nil
	})
	return out, err
}

// DecodeLeaf decodes the leaf data of the record at seq (Leaf) as
// DecodeRecord does a stored value; the record's chain hash is not in its
// leaf, so the result's Hash is zero.
func DecodeLeaf(seq uint64, data []byte) (*Record, error) {
	v := make([]byte, hashSize, hashSize+len(data))
	return DecodeRecord(seqKey(seq), append(v, data...))
}

// LogID is the id the log was given when it was created (Options.LogID):
// the origin line of its signed checkpoints. It is empty for a format-2
// file opened read-only.
func (s *Store) LogID() string { return s.logID }

// Format is the file's ledger format version: 3, or 2 for a file from
// before the Merkle tree opened read-only (a read-write Open upgrades it).
func (s *Store) Format() int { return s.format }

// ValidLogID reports why id cannot name a log, or nil: it must be 1 to 255
// bytes of UTF-8 without white space or '+', as a signed note's key name
// (golang.org/x/mod/sumdb/note), since the signing key is named after it.
func ValidLogID(id string) error {
	switch {
	case id == "":
		return errors.New("log id is empty")
	case len(id) > 255:
		return fmt.Errorf("log id is %d bytes; want at most 255", len(id))
	case !utf8.ValidString(id), strings.IndexFunc(id, unicode.IsSpace) >= 0, strings.Contains(id, "+"):
		return fmt.Errorf("log id %q: want UTF-8 without white space or '+'", id)
	}
	return nil
}

// newLogID is a fresh random log id.
// NewLogID returns a new random log id ("sessionledger/" and 32 hex
// digits), what a ledger gets at creation unless Options.LogID names one.
func NewLogID() string { return newLogID() }

func newLogID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return "sessionledger/" + hex.EncodeToString(b[:])
}

// treeBuildChunk is how many records one transaction of a tree build
// covers.
const treeBuildChunk = 1 << 16

// buildTree builds the stored tree of a format-2 file up to its head, in
// transactions of treeBuildChunk records, resuming what an interrupted
// build stored, and then makes the file format 3 with a log id. Run by a
// read-write Open, before the writer starts.
func (s *Store) buildTree(head uint64) error {
	log := s.opts.Logger
	begin := time.Now()
	var done int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketTree)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketCheckpoints); err != nil {
			return err
		}
		count, err := storedCount(b)
		if err != nil {
			return err
		}
		n, ok := treeSizeOf(count)
		if !ok || uint64(n) > head {
			// Not a build of ours: start over.
			if err := tx.DeleteBucket(bucketTree); err != nil {
				return err
			}
			_, err = tx.CreateBucket(bucketTree)
			n = 0
		}
		done = n
		return err
	})
	if err != nil {
		return fmt.Errorf("build the Merkle tree: %w", err)
	}
	log.Info("ledger: format v2 file: building its Merkle tree (once)", "records", head, "already built", done)
	last := time.Now()
	for uint64(done) < head {
		err := s.db.Update(func(tx *bolt.Tx) error {
			tb := tx.Bucket(bucketTree)
			tb.FillPercent = 1.0
			f, err := loadFrontier(done, bucketHashes{tb})
			if err != nil {
				return err
			}
			end := min(head, uint64(done)+treeBuildChunk)
			buf := make([]byte, 0, (end-uint64(done))*2*hashSize+64*hashSize)
			c := tx.Bucket(bucketLog).Cursor()
			want := uint64(done) + 1
			for k, v := c.Seek(seqKey(want)); want <= end; k, v = c.Next() {
				if k == nil || len(k) != 8 || binary.BigEndian.Uint64(k) != want {
					return fmt.Errorf("%w: seq %d missing from the log", ErrCorrupt, want)
				}
				if len(v) < headerSize {
					return fmt.Errorf("%w: seq %d truncated", ErrCorrupt, want)
				}
				hs, err := f.append(tlog.RecordHash(leafData(v)))
				if err != nil {
					return err
				}
				for _, h := range hs {
					buf = append(buf, h[:]...)
				}
				want++
			}
			if err := tb.Put(seqKey(uint64(tlog.StoredHashIndex(0, done))), buf); err != nil {
				return err
			}
			done = int64(end)
			return nil
		})
		if err != nil {
			return fmt.Errorf("build the Merkle tree at seq %d: %w", done+1, err)
		}
		if time.Since(last) >= 2*time.Second {
			last = time.Now()
			el := time.Since(begin)
			log.Info("ledger: building the Merkle tree", "done", done, "of", head,
				"records/s", int64(float64(done)/el.Seconds()))
		}
	}
	id := s.opts.LogID
	if id == "" {
		id = newLogID()
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(metaLogIDKey, []byte(id)); err != nil {
			return err
		}
		return meta.Put(metaMagicKey, metaMagic)
	})
	if err != nil {
		return fmt.Errorf("build the Merkle tree: %w", err)
	}
	el := time.Since(begin)
	log.Info("ledger: Merkle tree built; the file is now format v3", "records", head, "took", el.Round(time.Millisecond),
		"records/s", int64(float64(head)/max(el.Seconds(), 1e-9)), "log_id", id)
	return nil
}
