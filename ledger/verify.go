package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
)

// VerifyProgress, if not nil, is called during Verify after every chunk with
// the last seq checked. A panic in it is the caller's: Verify lets it go on
// unchanged, it does not report it as damage to the file.
type VerifyProgress func(seq uint64)

// Verify recomputes the hash chain over from <= seq <= to (from 0 means 1,
// to 0 means the head) and returns how many records it checked. If the log is
// not intact it returns a *ChainError naming the first bad seq and why:
// a missing seq (deleted record), a stored hash that does not match the
// recomputed one (changed bytes), a record whose embedded seq differs from
// its key (moved record), undecodable framing, a key that is not a seq, or
// damage a read-only Open found at the end of the log. A file whose bbolt
// page structures are damaged gives ErrCorrupt instead of a crash (bbolt
// panics, or faults on its memory map, on such pages); so does a read-only
// Open, but not a read-write one (see Open).
//
// Verify starting past 1 trusts the stored hash of record from-1 as its
// anchor. The chain alone proves the log consistent, not authentic: whoever
// can write the file can recompute it. In particular, deleting the newest
// records leaves a shorter chain that verifies: the chain cannot tell it
// from a log that never had them. Compare the head with one recorded
// elsewhere (signed checkpoints kept off the host, docs/architecture.md).
//
// Not guarded: page damage that makes bbolt's tree point back into itself
// can make bbolt loop, growing its cursor stack without bound (bbolt's own
// Tx.Check walks the tree the same way).
func (s *Store) Verify(ctx context.Context, from, to uint64, progress VerifyProgress) (checked uint64, err error) {
	if from == 0 {
		from = 1
	}
	want := from
	// A file whose bbolt page structures are damaged (not only its records)
	// makes bbolt panic on an assertion, index past a slice, or fault on
	// its memory map; Verify is what is run on a file suspected of damage,
	// so it reports that as ErrCorrupt instead of crashing. A panic in the
	// caller's progress callback is not damage: it goes on up as it came.
	// The callback runs as it would outside Verify: faults crash.
	var inProgress bool
	report := func(seq uint64) {
		inProgress = true
		fault := debug.SetPanicOnFault(false)
		progress(seq)
		debug.SetPanicOnFault(fault)
		inProgress = false
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if inProgress {
				panic(r)
			}
			err = fmt.Errorf("%w: verify stopped near seq %d: the file's bbolt page structures are damaged: %v", ErrCorrupt, want, r)
		}
	}()
	var prev Hash
	if from > 1 {
		var head uint64
		if head, err = s.durableLimit(0); err != nil {
			return 0, err
		}
		if from-1 > head {
			return 0, &ChainError{Seq: from - 1, Reason: fmt.Sprintf("anchor record missing: past the head, seq %d", head)}
		}
		err = s.view(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketLog).Get(seqKey(from - 1))
			if len(v) < hashSize {
				return &ChainError{Seq: from - 1, Reason: "anchor record missing or truncated"}
			}
			copy(prev[:], v[:hashSize])
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	err = s.scanRaw(ctx, from, to, func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k)
		if seq != want {
			return &ChainError{Seq: want, Reason: fmt.Sprintf("missing: the log jumps from %d to %d", want-1, seq)}
		}
		h, err := checkValue(seq, prev, v)
		if err != nil {
			return err
		}
		prev = h
		want++
		checked++
		if progress != nil && checked%scanChunk == 0 {
			report(seq)
		}
		return nil
	})
	var ce *ChainError
	if errors.Is(err, ErrCorrupt) && !errors.As(err, &ce) {
		// Damage scanRaw found between records (a key that is not a seq):
		// it sits where want was expected.
		err = &ChainError{Seq: want, Reason: err.Error()}
	}
	if err != nil {
		return checked, err
	}
	if to != 0 && want <= to && want <= s.Head().Seq {
		return checked, &ChainError{Seq: want, Reason: "missing: the log ends early"}
	}
	if d := s.headDamage; d != nil && d.Seq >= from && (to == 0 || d.Seq <= to) {
		// Found by a read-only Open at the end of the log: a last record
		// whose chain checks out but which does not decode, or a key after
		// it that is not a seq.
		return checked, d
	}
	if progress != nil {
		report(want - 1)
	}
	return checked, nil
}

// checkValue verifies one stored value against its predecessor's hash and
// returns its hash. It parses only the seq field of the protobuf, which keeps
// verification at hashing speed.
func checkValue(seq uint64, prev Hash, v []byte) (Hash, error) {
	if len(v) < headerSize {
		return Hash{}, &ChainError{Seq: seq, Reason: fmt.Sprintf("truncated: %d bytes", len(v))}
	}
	got := chainHash(prev, v[hashSize:])
	if !bytes.Equal(got[:], v[:hashSize]) {
		return Hash{}, &ChainError{Seq: seq, Reason: "hash mismatch: the record or its predecessor was changed"}
	}
	return checkRest(seq, v)
}

// checkRest checks what checkValue checks after the hash: the format
// version and the embedded seq. It returns the stored hash.
func checkRest(seq uint64, v []byte) (Hash, error) {
	var got Hash
	copy(got[:], v[:hashSize])
	if v[hashSize] != formatV1 {
		return Hash{}, &ChainError{Seq: seq, Reason: fmt.Sprintf("unknown record format version %d", v[hashSize])}
	}
	embedded, err := embeddedSeq(v[headerSize:])
	if err != nil {
		return Hash{}, &ChainError{Seq: seq, Reason: err.Error()}
	}
	if embedded != seq {
		return Hash{}, &ChainError{Seq: seq, Reason: fmt.Sprintf("record says seq %d: moved", embedded)}
	}
	return got, nil
}

// embeddedSeq reads field 1 (Record.seq) from a protobuf without decoding
// the rest.
func embeddedSeq(b []byte) (uint64, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errors.New("malformed record protobuf")
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, errors.New("malformed record seq")
			}
			return v, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return 0, errors.New("malformed record protobuf")
		}
		b = b[n:]
	}
	return 0, errors.New("record has no seq")
}
