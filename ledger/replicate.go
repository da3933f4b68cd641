package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"time"

	"github.com/oklog/ulid/v2"
)

// Replicated is a record another log ordered (a cluster's shared stream),
// to be stored by a replica at that log's seq.
type Replicated struct {
	// Seq is the record's position in the ordering log.
	Seq uint64
	// Time is the ordering log's time for it. The replica stores the
	// later of it and the previous record's time, so times never go back.
	Time time.Time
	// Topic, UUID, Metadata and Payload are the watermill message as it
	// was published.
	Topic    string
	UUID     string
	Metadata map[string]string
	Payload  []byte
	// OnInvalid, when set, is where a record whose payload is not valid
	// for Topic (not a hub's event on EventsTopic) is stored instead, with
	// metadata "rejected" saying why, so every replica keeps the same
	// record; empty, Replicate refuses it.
	OnInvalid string
}

// fixedStamp is what the ordering log fixed for a replicated record.
type fixedStamp struct {
	seq     uint64
	time    time.Time
	entropy [10]byte
}

// Replicate stores recs, which the ordering log numbered, at their own
// seqs: the first must be the head's next and the others follow it one by
// one (ErrNotNext otherwise, and nothing is written). It returns once they
// are durable, with their stamps, like Append; recs commit together or not
// at all, and concurrent calls share commits.
//
// What a replica stores is a function of the ordering log's records
// alone — no local clock, no local random id — so every replica of one
// log holds the same bytes and computes the same chain: the time is the
// later of the record's Time and the previous record's, and the ULID has
// that time's millisecond and 80 bits taken from a SHA-256 of the
// message's UUID, raised past the previous id by the ULID monotonic rule
// when it is not above it. So id order == seq order == time order holds in
// a replica as in a local log. Only a store opened with Options.Replica
// takes them.
func (s *Store) Replicate(ctx context.Context, recs []Replicated) ([]Stamp, error) {
	if !s.opts.Replica {
		return nil, fmt.Errorf("replicate: %w", errNotReplica)
	}
	pending := make([]pendingRecord, len(recs))
	for i, r := range recs {
		p, err := encodeMessage(r.Topic, r.UUID, r.Metadata, r.Payload)
		if err != nil && r.OnInvalid != "" {
			md := maps.Clone(r.Metadata)
			if md == nil {
				md = map[string]string{}
			}
			md["rejected"] = err.Error()
			p, err = encodeMessage(r.OnInvalid, r.UUID, md, r.Payload)
		}
		if err != nil {
			return nil, fmt.Errorf("replicate seq %d: %w", r.Seq, err)
		}
		p.fixed = &fixedStamp{seq: r.Seq, time: r.Time}
		sum := sha256.Sum256([]byte(r.UUID))
		copy(p.fixed.entropy[:], sum[:])
		pending[i] = p
	}
	if len(pending) == 0 {
		return nil, nil
	}
	return s.do(ctx, &appendReq{recs: pending})
}

// errNotReplica: Replicate on a store not opened as a replica.
var errNotReplica = fmt.Errorf("the ledger was not opened as a replica")

// checkFixed refuses the requests of batch whose replicated records do not
// follow on from head in order, answering them with ErrNotNext, and
// returns the rest. A request that cannot be committed must not fail the
// transaction: that would stop the ledger for good.
func checkFixed(head uint64, batch []*appendReq) []*appendReq {
	kept := batch[:0]
	next := head
	for _, req := range batch {
		if len(req.recs) > 0 && req.recs[0].fixed != nil {
			for j, r := range req.recs {
				if want := next + 1 + uint64(j); r.fixed == nil || r.fixed.seq != want {
					got := uint64(0)
					if r.fixed != nil {
						got = r.fixed.seq
					}
					req.done <- appendResult{err: fmt.Errorf("replicate: %w: record seq %d where the ledger's next is %d", ErrNotNext, got, want)}
					req = nil
					break
				}
			}
			if req == nil {
				continue
			}
		}
		next += uint64(len(req.recs))
		kept = append(kept, req)
	}
	return kept
}

// stampFixed gives h (whose Seq is already the new record's) the time and
// id of a replicated record f, as Replicate describes.
func stampFixed(h *Head, f *fixedStamp) {
	t := f.time
	if t.Before(h.Time) {
		t = h.Time
	}
	id := fixedID(uint64(t.UnixMilli()), f.entropy)
	if h.Seq > 1 && bytes.Compare(id[:], h.ID[:]) <= 0 {
		id = h.ID
		if incrementEntropy(&id) {
			ms := h.ID.Time() + 1
			t = time.UnixMilli(int64(ms))
			id = fixedID(ms, f.entropy)
		}
	}
	h.ID, h.Time = id, t.UTC()
}

func fixedID(ms uint64, entropy [10]byte) ulid.ULID {
	var id ulid.ULID
	_ = id.SetTime(ms)
	copy(id[6:], entropy[:])
	id[6] &= 0x7f // headroom for same-millisecond increments, as freshID
	return id
}
