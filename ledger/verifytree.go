package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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
	var f frontier
	var prev Hash
	want := uint64(1)
	var computed []byte // stored hashes recomputed since compareFrom
	compareFrom := int64(0)
	compare := s.format >= 3
	flush := func() error {
		if !compare || len(computed) == 0 {
			return nil
		}
		bad, err := s.compareStored(compareFrom, computed)
		if err != nil {
			return err
		}
		compareFrom += int64(len(computed) / hashSize)
		computed = computed[:0]
		if bad >= 0 {
			res.TreeDamage = storedDamage(bad)
			compare = false
		}
		return nil
	}
	visit := func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			return &ChainError{Seq: want, Reason: fmt.Sprintf("missing: the log jumps from %d to %d", want-1, seq)}
		}
		if len(v) < hashSize {
			return &ChainError{Seq: seq, Reason: fmt.Sprintf("truncated: %d bytes", len(v))}
		}
		h, err := checkValue(seq, prev, v)
		if err != nil {
			if ce := (*ChainError)(nil); errors.As(err, &ce) && res.Broken == nil {
				res.Broken = ce
			}
			copy(h[:], v[:hashSize]) // go on from the stored hash, as Verify from an anchor
		}
		prev = h
		hs, err := f.append(tlog.RecordHash(leafData(v)))
		if err != nil {
			return err
		}
		if compare {
			for _, x := range hs {
				computed = append(computed, x[:]...)
			}
		}
		res.Checked = seq
		want++
		for len(sizes) > 0 && sizes[0] <= seq {
			if sizes[0] == seq {
				r, err := f.root()
				if err != nil {
					return err
				}
				res.Roots[seq] = r
			}
			sizes = sizes[1:]
		}
		return nil
	}
	// Segments of compareEvery records: after each, the stored hashes
	// recomputed for it are compared in a short read transaction of its
	// own (never inside the scan's).
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
	if res.Root, err = f.root(); err != nil {
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
