package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// scanChunk is how many records one read transaction visits before it is
// released. Long-lived read transactions block bbolt's remap (and so the
// writer) when the file grows, so long scans hop between short ones.
const scanChunk = 4096

// scanBatch is how many decoded records Scan holds before it ends its read
// transaction and hands them to its callback.
const scanBatch = 512

// ErrStop may be returned by a scan callback to end the scan early without
// an error.
var ErrStop = errors.New("stop scan")

// Get returns the record at seq, or ErrNotFound. Like every read it sees
// only durable records: none past Head.
func (s *Store) Get(seq uint64) (*Record, error) {
	head, err := s.durableLimit(0)
	if err != nil {
		return nil, err
	}
	if seq == 0 || seq > head {
		return nil, fmt.Errorf("%w: seq %d", ErrNotFound, seq)
	}
	var r *Record
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLog).Get(seqKey(seq))
		if v == nil {
			return fmt.Errorf("%w: seq %d", ErrNotFound, seq)
		}
		var err error
		r, err = DecodeRecord(seqKey(seq), v)
		return err
	})
	return r, err
}

// Scan calls fn for every record with from <= seq <= to in order (to == 0
// means up to the head as it is when each chunk is read). fn may return
// ErrStop to end early. A record that does not decode ends the scan with
// ErrCorrupt naming its seq, after fn has had every record before it.
//
// Records are decoded in batches inside short read transactions and fn
// runs outside them, so a slow consumer (a gRPC client streaming an
// export) never holds a read transaction open: one that stays open blocks
// the writer whenever bbolt must grow its memory map.
func (s *Store) Scan(ctx context.Context, from, to uint64, fn func(*Record) error) error {
	if from == 0 {
		from = 1
	}
	batch := make([]*Record, 0, scanBatch)
	for {
		batch = batch[:0]
		full := false
		err := s.scanRaw(ctx, from, to, func(k, v []byte) error {
			r, err := DecodeRecord(k, v)
			if err != nil {
				return err
			}
			batch = append(batch, r)
			if len(batch) == scanBatch {
				full = true
				return ErrStop
			}
			return nil
		})
		for _, r := range batch {
			if ferr := fn(r); ferr != nil {
				if errors.Is(ferr, ErrStop) {
					return nil
				}
				return ferr
			}
		}
		if err != nil || !full {
			return err
		}
		from = batch[len(batch)-1].Seq + 1
		if to != 0 && from > to {
			return nil
		}
	}
}

// scanRaw walks the log bucket in chunks of short read transactions, up to
// to (0: the head as each chunk begins) and never past the head. The slices
// passed to fn are valid only during the call.
//
// Why the head bounds every read: bbolt lets a new read transaction see a
// commit once its meta page is written, before the fdatasync that makes it
// durable (bbolt v1.5.0 Tx.writeMeta releases the meta lock, then syncs).
// The head moves only after Commit returned, so a reader bounded by it never
// sees, or hands a projection, a record a crash could still take back.
func (s *Store) scanRaw(ctx context.Context, from, to uint64, fn func(k, v []byte) error) error {
	next := from
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		limit, err := s.durableLimit(to)
		if err != nil || next > limit {
			return err
		}
		done := false
		err = s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketLog).Cursor()
			var k, v []byte
			if next == 1 {
				// From the start, also meet keys that sort before seq 1
				// (seq 0, short keys): damage Verify must report.
				k, v = c.First()
			} else {
				k, v = c.Seek(seqKey(next))
			}
			n := 0
			for ; ; k, v = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				if len(k) != 8 {
					if bytes.Compare(k, seqKey(limit)) > 0 {
						done = true // past the range
						return nil
					}
					return badLogKey(k)
				}
				seq := binary.BigEndian.Uint64(k)
				if seq < next {
					return fmt.Errorf("%w: log holds seq %d", ErrCorrupt, seq)
				}
				if seq > limit {
					done = true
					return nil
				}
				if n == scanChunk {
					next = seq
					return nil
				}
				if err := fn(k, v); err != nil {
					return err
				}
				n++
			}
		})
		if errors.Is(err, ErrStop) {
			return nil
		}
		if err != nil || done {
			return err
		}
	}
}

// durableLimit is the last seq a read may return: to, but never past the
// head (to == 0: the head). See scanRaw for why. After Close it returns
// ErrClosed, so that a read stopped at the head, which never asks bbolt,
// says so as every call after Close does.
func (s *Store) durableLimit(to uint64) (uint64, error) {
	if s.Closed() {
		return 0, ErrClosed
	}
	head := s.Head().Seq
	if to == 0 || to > head {
		return head, nil
	}
	return to, nil
}

// badLogKey is the error for a key in the log bucket that is not an 8-byte
// seq: the writer never puts one, so the file was damaged or edited.
func badLogKey(k []byte) error {
	shown := k
	if len(shown) > 16 {
		shown = shown[:16]
	}
	return fmt.Errorf("%w: log key %x is %d bytes, want 8", ErrCorrupt, shown, len(k))
}

// CheckNext is for callers that read a range of the log in order and need
// it whole: it reports ErrCorrupt, naming what is missing, when seq is not
// *next (the seq a dense log holds there), and moves *next past seq. Call
// it once more with the range's end plus one to catch records missing at
// the end. The log's seqs are dense, so a jump is a deleted record.
func CheckNext(next *uint64, seq uint64) error {
	switch {
	case seq == *next:
		*next = seq + 1
		return nil
	case seq < *next:
		return fmt.Errorf("%w: seq %d read after seq %d", ErrCorrupt, seq, *next-1)
	case seq == *next+1:
		return fmt.Errorf("%w: seq %d missing from the log", ErrCorrupt, *next)
	default:
		return fmt.Errorf("%w: seq %d to %d missing from the log", ErrCorrupt, *next, seq-1)
	}
}

// SeqAtTime returns the first seq whose time is at or after t (head+1 when
// there is none). Times never decrease along the log, so this is a binary
// search: about log2(n) record reads.
func (s *Store) SeqAtTime(t time.Time) (uint64, error) {
	head := s.Head().Seq        // never past it: see scanRaw
	lo, hi := uint64(1), head+1 // answer in [lo, hi]
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLog)
		for lo < hi {
			mid := lo + (hi-lo)/2
			v := b.Get(seqKey(mid))
			if v == nil {
				return fmt.Errorf("%w: seq %d missing from the log", ErrCorrupt, mid)
			}
			rt, err := recordTime(seqKey(mid), v)
			if err != nil {
				return err
			}
			if rt.Before(t) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		return nil
	})
	return lo, err
}

// ScanTime calls fn for every record with since <= time < until in order. A
// zero since means from the start, a zero until means up to the head.
func (s *Store) ScanTime(ctx context.Context, since, until time.Time, fn func(*Record) error) error {
	from := uint64(1)
	if !since.IsZero() {
		var err error
		if from, err = s.SeqAtTime(since); err != nil {
			return err
		}
	}
	var to uint64
	if !until.IsZero() {
		end, err := s.SeqAtTime(until)
		if err != nil {
			return err
		}
		if end <= from {
			return nil
		}
		to = end - 1
	}
	return s.Scan(ctx, from, to, fn)
}

// ByUser calls fn, in log order, for every event about user with
// from <= seq <= to (to == 0: up to the head), through the user index.
func (s *Store) ByUser(ctx context.Context, user string, from, to uint64, fn func(*Record) error) error {
	return s.byIndex(ctx, kindUser, user, from, to, fn)
}

// BySession calls fn, in log order, for every event about session with
// from <= seq <= to (to == 0: up to the head), through the session index.
func (s *Store) BySession(ctx context.Context, session string, from, to uint64, fn func(*Record) error) error {
	return s.byIndex(ctx, kindSession, session, from, to, fn)
}

// ByTopic calls fn, in log order, for every record published on topic with
// from <= seq <= to (to == 0: up to the head).
func (s *Store) ByTopic(ctx context.Context, topic string, from, to uint64, fn func(*Record) error) error {
	return s.byIndex(ctx, kindTopic, topic, from, to, fn)
}

func (s *Store) byIndex(ctx context.Context, kind indexKind, name string, from, to uint64, fn func(*Record) error) error {
	next := max(from, 1)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, more, err := s.readIndex(kind, name, next, to, scanChunk)
		if err != nil {
			return err
		}
		// Callbacks run outside the transaction so a slow consumer does not
		// hold it open.
		for _, r := range batch {
			if err := fn(r); err != nil {
				if errors.Is(err, ErrStop) {
					return nil
				}
				return err
			}
		}
		if !more {
			return nil
		}
		next = batch[len(batch)-1].Seq + 1
	}
}

// readIndex returns, from one read transaction, up to limit records of
// (kind, name) with from <= seq <= to (to == 0: the head; never past it), and whether there
// may be more.
func (s *Store) readIndex(kind indexKind, name string, from, to uint64, limit int) ([]*Record, bool, error) {
	var out []*Record
	more, err := s.visitIndex(kind, name, from, to, limit, func(k, v []byte) error {
		r, err := DecodeRecord(k, v)
		if err == nil {
			out = append(out, r)
		}
		return err
	})
	return out, more, err
}

// visitIndex calls fn, inside one read transaction, with the key and stored
// value of up to limit records of (kind, name) with from <= seq <= to (to
// == 0: the head; never past it), in order, and reports whether there may be
// more. fn must not keep k or v.
func (s *Store) visitIndex(kind indexKind, name string, from, to uint64, limit int, fn func(k, v []byte) error) (bool, error) {
	// A commit's tail block is visible before the commit is durable, like
	// its records: stop at the head (see scanRaw).
	to, err := s.durableLimit(to)
	if err != nil || from > to {
		return false, err
	}
	more := false
	err = s.view(func(tx *bolt.Tx) error {
		seqs, err := indexSeqs(tx, kind, name, from, to, limit+1, nil)
		if err != nil {
			return err
		}
		if len(seqs) > limit {
			more = true
			seqs = seqs[:limit]
		}
		log := tx.Bucket(bucketLog)
		for _, seq := range seqs {
			key := seqKey(seq)
			v := log.Get(key)
			if v == nil {
				return fmt.Errorf("%w: index names seq %d, which is not in the log", ErrCorrupt, seq)
			}
			if err := fn(key, v); err != nil {
				return err
			}
		}
		return nil
	})
	return more, err
}
