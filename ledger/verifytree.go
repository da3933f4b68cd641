package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"slices"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// TreeCheck is what VerifyTree found.
type TreeCheck struct {
	// Head is the head when the check began; Checked how many records it
	// read, seq 1 to Checked (the head, unless a seq is missing).
	Head    Head
	Checked uint64
	// Root is the tree root recomputed from the bytes of records 1 to
	// Checked; Roots the root recomputed at each size asked for that is at
	// most Checked.
	Root  Hash
	Roots map[uint64]Hash
	// Broken is the first place the hash chain does not check out, as
	// Verify names it; nil when it verifies.
	Broken *ChainError
	// TreeDamage is the first place the stored Merkle tree disagrees with
	// the tree recomputed from the records (a record changed after it was
	// written, or the stored tree), or covers other records than the log
	// holds; nil when they agree (and on a format-2 file, which has none).
	TreeDamage *ChainError

	// names is the records' side of CrossCheck's postings comparison,
	// summed by the tree builder (CrossCheckAfter).
	names *nameSums
}

// compareEvery is how many records' stored hashes VerifyTree compares at
// once.
const compareEvery = 1 << 16

// VerifyTree reads the whole log once, from seq 1 to the head: it
// recomputes the hash chain (as Verify; it goes on past a changed record,
// and stops at a missing one), recomputes the Merkle tree from the
// records' bytes, returning its root at the head and at each of sizes, and
// compares the stored tree with it. Nothing it reports trusts the stored
// tree: a checkpoint's root is to be compared with Roots. It works on a
// format-2 file too (without the stored tree to compare).
//
// progress, if not nil, is called now and then with the last seq read,
// from inside a read transaction: it must return quickly.
func (s *Store) VerifyTree(ctx context.Context, sizes []uint64, progress VerifyProgress) (TreeCheck, error) {
	res := TreeCheck{Head: s.Head(), Roots: make(map[uint64]Hash)}
	sizes = slices.Clone(sizes)
	slices.Sort(sizes)
	var prev Hash
	want := uint64(1)
	var lh leafHasher
	compareFrom := int64(0)
	compare := s.format >= 3
	// Two goroutines: this one scans and checks the chain; the tree builder
	// hashes the leaves (copied into batches) and adds them to the tree
	// (tlog's stored hashes), on the other core. Profiled on 10M records,
	// the scan (bbolt's page walk and the chain) and the tree (leaf and
	// node hashes) then take about the same time. The builder touches no
	// bbolt transaction, so this one may wait for it inside one.
	tb := newTreeBuilder(sizes, compare)
	res.names = &tb.names
	defer tb.stop()
	batch := tb.batch()
	visit := func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			return &ChainError{Seq: want, Reason: fmt.Sprintf("missing: the log jumps from %d to %d", want-1, seq)}
		}
		if len(v) < hashSize {
			return &ChainError{Seq: seq, Reason: fmt.Sprintf("truncated: %d bytes", len(v))}
		}
		h, err := lh.checkValue(seq, prev, v)
		if err != nil {
			if ce := (*ChainError)(nil); errors.As(err, &ce) && res.Broken == nil {
				res.Broken = ce
			}
			copy(h[:], v[:hashSize]) // go on from the stored hash, as Verify from an anchor
		}
		prev = h
		batch.add(leafData(v))
		if batch.full() {
			tb.send(batch)
			batch = tb.batch()
		}
		res.Checked = seq
		want++
		return nil
	}
	// flush waits for the builder to catch up and compares the stored
	// hashes it recomputed with the stored tree, in a short read
	// transaction of its own (never inside the scan's).
	flush := func() error {
		tb.send(batch)
		batch = tb.batch()
		computed, err := tb.sync()
		if err != nil || !compare || len(computed) == 0 {
			return err
		}
		bad, err := s.compareStored(compareFrom, computed)
		if err != nil {
			return err
		}
		compareFrom += int64(len(computed) / hashSize)
		if bad >= 0 {
			res.TreeDamage = storedDamage(bad)
			compare = false
			tb.compare = false // the builder is idle between sync and send
		}
		return nil
	}
	// Segments of compareEvery records.
	var err error
	for from := uint64(1); from <= res.Head.Seq && err == nil; from += compareEvery {
		to := min(from+compareEvery-1, res.Head.Seq)
		if err = s.scanRaw(ctx, from, to, visit); err == nil {
			if want <= to {
				err = &ChainError{Seq: want, Reason: "missing: the log ends early"}
			} else {
				err = flush()
				if progress != nil {
					progress(to)
				}
			}
		}
	}
	if ferr := flush(); err == nil {
		err = ferr
	}
	res.Roots = tb.roots
	var ce *ChainError
	switch {
	case errors.As(err, &ce):
		if res.Broken == nil || ce.Seq < res.Broken.Seq {
			res.Broken = ce
		}
		err = nil
	case errors.Is(err, ErrCorrupt):
		// A key that is not a seq, met where want was expected.
		if res.Broken == nil {
			res.Broken = &ChainError{Seq: want, Reason: err.Error()}
		}
		err = nil
	}
	if err != nil {
		return res, err
	}
	if res.Root, err = tb.f.root(); err != nil {
		return res, err
	}
	if res.TreeDamage == nil && s.treeDamage != nil {
		res.TreeDamage = s.treeDamage
	}
	if res.Broken == nil && s.headDamage != nil {
		res.Broken = s.headDamage
	}
	if progress != nil {
		progress(res.Checked)
	}
	return res, nil
}

// treeBuilder adds leaf hashes to a frontier on its own goroutine, keeping
// the stored hashes it computes (for comparison) and the roots at the sizes
// asked for.
type treeBuilder struct {
	in     chan *leafBatch
	pool   chan *leafBatch
	synced chan struct{}
	done   chan struct{}
	// owned by the builder between send and sync; by the caller otherwise
	f        frontier
	sizes    []uint64
	roots    map[uint64]Hash
	compare  bool
	computed []byte
	names    nameSums
	err      error
}

// leafBatch is leaves' data on its way to the builder: the leaves are
// data[ends[i-1]:ends[i]].
type leafBatch struct {
	data []byte
	ends []int
}

const leafBatchSize = 1024

func (b *leafBatch) add(leaf []byte) {
	b.data = append(b.data, leaf...)
	b.ends = append(b.ends, len(b.data))
}

func (b *leafBatch) full() bool { return len(b.ends) == leafBatchSize }

func newTreeBuilder(sizes []uint64, compare bool) *treeBuilder {
	tb := &treeBuilder{in: make(chan *leafBatch, 8), pool: make(chan *leafBatch, 10), synced: make(chan struct{}),
		done: make(chan struct{}), sizes: sizes, roots: make(map[uint64]Hash), compare: compare, names: nameSums{seed: maphash.MakeSeed()},
		computed: make([]byte, 0, (2*compareEvery+64)*hashSize)}
	go tb.run()
	return tb
}

func (tb *treeBuilder) batch() *leafBatch {
	select {
	case b := <-tb.pool:
		b.data, b.ends = b.data[:0], b.ends[:0]
		return b
	default:
		return &leafBatch{data: make([]byte, 0, leafBatchSize*512), ends: make([]int, 0, leafBatchSize)}
	}
}

func (tb *treeBuilder) send(b *leafBatch) {
	if len(b.ends) > 0 {
		tb.in <- b
	}
}

// sync waits until the builder has added every leaf sent, and returns the
// stored hashes computed since the last sync (valid until the next send).
func (tb *treeBuilder) sync() ([]byte, error) {
	tb.in <- nil
	<-tb.synced
	out := tb.computed
	tb.computed = tb.computed[:0]
	return out, tb.err
}

func (tb *treeBuilder) stop() {
	close(tb.in)
	<-tb.done
}

func (tb *treeBuilder) run() {
	defer close(tb.done)
	var lh leafHasher
	for b := range tb.in {
		if b == nil {
			tb.synced <- struct{}{}
			continue
		}
		start := 0
		for _, end := range b.ends {
			leaf := b.data[start:end]
			start = end
			if tb.err != nil {
				break
			}
			tb.names.add(uint64(tb.f.n)+1, leaf)
			hs, err := tb.f.append(lh.leaf(leaf))
			if err != nil {
				tb.err = err
				break
			}
			if tb.compare {
				for _, x := range hs {
					tb.computed = append(tb.computed, x[:]...)
				}
			}
			n := uint64(tb.f.n)
			for len(tb.sizes) > 0 && tb.sizes[0] <= n {
				if tb.sizes[0] == n {
					if tb.roots[n], err = tb.f.root(); err != nil {
						tb.err = err
					}
				}
				tb.sizes = tb.sizes[1:]
			}
		}
		select {
		case tb.pool <- b:
		default:
		}
	}
}

// storedDamage describes the stored tree hash at index bad, the first that
// differs from the records.
func storedDamage(bad int64) *ChainError {
	level, n := tlog.SplitStoredHashIndex(bad)
	first, last := uint64(n)<<level+1, uint64(n+1)<<level
	if level == 0 {
		return &ChainError{Seq: first, Reason: fmt.Sprintf("the stored Merkle leaf hash of seq %d does not match the record's bytes: "+
			"the record (or the stored tree) was changed after it was written", first)}
	}
	return &ChainError{Seq: first, Reason: fmt.Sprintf("the stored Merkle tree hash over seqs %d to %d does not match the records: the stored tree was changed", first, last)}
}

// compareStored compares computed, the stored hashes from index from on,
// with the tree bucket, and returns the index of the first that differs or
// is missing, or -1.
func (s *Store) compareStored(from int64, computed []byte) (int64, error) {
	bad := int64(-1)
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTree).Cursor()
		v, off, err := seekStored(c, from)
		if err != nil {
			bad = from
			return nil
		}
		idx := from
		for len(computed) > 0 {
			n := min(len(v)-off, len(computed))
			if !bytes.Equal(v[off:off+n], computed[:n]) {
				for i := 0; i < n; i += hashSize {
					if !bytes.Equal(v[off+i:off+i+hashSize], computed[i:i+hashSize]) {
						bad = idx + int64(i/hashSize)
						return nil
					}
				}
			}
			computed = computed[n:]
			idx += int64(n / hashSize)
			if len(computed) == 0 {
				break
			}
			var k []byte
			k, v = c.Next()
			off = 0
			if k == nil || len(k) != 8 || int64(binary.BigEndian.Uint64(k)) != idx || len(v)%hashSize != 0 {
				bad = idx
				return nil
			}
		}
		return nil
	})
	return bad, err
}

// leafHasher hashes leaves and chain links with one reused SHA-256 state:
// VerifyTree hashes every record twice, and a new state per hash was a
// tenth of its time (profile in docs/performance.md).
type leafHasher struct {
	h   hash.Hash
	sum []byte
}

// leaf is tlog.RecordHash(data): SHA-256(0x00 || data), RFC 6962's leaf
// hash (TestLeafHasherMatchesTlog).
func (l *leafHasher) leaf(data []byte) tlog.Hash {
	if l.h == nil {
		l.h = sha256.New()
	}
	l.h.Reset()
	l.h.Write([]byte{0})
	l.h.Write(data)
	var out tlog.Hash
	l.sum = l.h.Sum(l.sum[:0])
	copy(out[:], l.sum)
	return out
}

// checkValue is checkValue with the reused state.
func (l *leafHasher) checkValue(seq uint64, prev Hash, v []byte) (Hash, error) {
	if len(v) < headerSize {
		return checkValue(seq, prev, v)
	}
	if l.h == nil {
		l.h = sha256.New()
	}
	l.h.Reset()
	l.h.Write(prev[:])
	l.h.Write(v[hashSize:])
	l.sum = l.h.Sum(l.sum[:0])
	if !bytes.Equal(l.sum, v[:hashSize]) {
		return checkValue(seq, prev, v) // names what is wrong
	}
	return checkRest(seq, v)
}
