package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"runtime"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// maxYields bounds how long the writer waits for more appenders to join a
// batch.
const maxYields = 64

// defaultOffsetFlushDelay is Options.OffsetFlushDelay's default. Without a
// delay every Ack cost its own fsync'd commit; 20ms bounds what a crash can
// make a group redeliver to what it acked in that time.
const defaultOffsetFlushDelay = 20 * time.Millisecond

// Stamp is what the ledger assigned to an appended record.
type Stamp struct {
	Seq  uint64
	ID   ulid.ULID
	Time time.Time
	Hash Hash
}

// appendReq is one caller's unit of work for the writer: records to append
// and/or a key/value put into a side bucket, all or none.
type appendReq struct {
	recs []pendingRecord
	put  *kvPut
	done chan appendResult
}

// pendingRecord is a record as the caller hands it to the writer: its
// encoded body (encodeBody) and the names it is indexed under.
type pendingRecord struct {
	body                 []byte
	topic, user, session string
	// fixed is set for a replicated record: its seq and time come from
	// the ordering log (Replicate).
	fixed *fixedStamp
}

type kvPut struct {
	bucket     []byte
	key, value []byte
}

type appendResult struct {
	stamps []Stamp
	err    error
}

// Append stores events on the events topic and returns once they are durable
// (fsync'd), with the seq, id, time and hash each was given. The events of
// one call are contiguous in the log and commit together or not at all.
// Concurrent calls share transactions (group commit), which is what makes
// the ledger fast: call it from many goroutines rather than batching by hand.
//
// ctx bounds only the wait to be accepted by the writer: once accepted, an
// append is committed or failed as a whole and Append waits for the outcome,
// so a cancelled caller never mistakes a durable event for a lost one.
func (s *Store) Append(ctx context.Context, events ...*eventpb.Event) ([]Stamp, error) {
	pending := make([]pendingRecord, len(events))
	for i, ev := range events {
		if err := ValidateEvent(ev); err != nil {
			return nil, err
		}
		var err error
		if pending[i], err = eventRecord(ev); err != nil {
			return nil, err
		}
	}
	return s.submitPending(ctx, pending)
}

// eventRecord encodes ev for the writer, on the events topic and indexed
// under its user and session. It does not validate ev: Append does.
func eventRecord(ev *eventpb.Event) (pendingRecord, error) {
	body, err := encodeEventBody(ev)
	if err != nil {
		return pendingRecord{}, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	return pendingRecord{body: body, topic: EventsTopic, user: ev.GetUser(), session: ev.GetSession()}, nil
}

// MaxNameLen is the most bytes a user, session, device, topic,
// consumer-group name or blob key may have. Names become bbolt keys (the
// indexes, consumer offsets, blobs), and bbolt refuses keys over 32 KiB with
// an error that would fail the whole commit; the limit leaves room for the
// key's framing and is far above any real name.
const MaxNameLen = 1024

// ValidateEvent reports why the ledger would refuse ev, or nil. Unknown
// event types are accepted (forward compatibility); UNSPECIFIED is not, nor
// a user, session or device longer than MaxNameLen (ErrNameTooLong).
func ValidateEvent(ev *eventpb.Event) error {
	if ev == nil {
		return fmt.Errorf("%w: nil event", ErrInvalidEvent)
	}
	if ev.GetType() == eventpb.EventType_EVENT_TYPE_UNSPECIFIED {
		return fmt.Errorf("%w: event type is unspecified", ErrInvalidEvent)
	}
	for _, f := range [...]struct{ what, name string }{{"user", ev.GetUser()}, {"session", ev.GetSession()}, {"device", ev.GetDevice()}} {
		if err := checkName(f.what, f.name); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
		}
	}
	return nil
}

// checkName returns ErrNameTooLong if name is longer than MaxNameLen.
func checkName(what, name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s is %d bytes, more than %d", ErrNameTooLong, what, len(name), MaxNameLen)
	}
	return nil
}

// submitPending hands recs, encoded by their callers (the writer only
// adds seq, id, time and hash), to the writer and waits for the commit.
func (s *Store) submitPending(ctx context.Context, recs []pendingRecord) ([]Stamp, error) {
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	if s.opts.Replica {
		return nil, ErrReplica
	}
	if len(recs) == 0 {
		return nil, nil
	}
	return s.do(ctx, &appendReq{recs: recs})
}

// do hands req to the writer and waits for its commit.
func (s *Store) do(ctx context.Context, req *appendReq) ([]Stamp, error) {
	if s.opts.ReadOnly {
		return nil, ErrReadOnly
	}
	req.done = make(chan appendResult, 1)
	// Counted until the caller has its result (see writeLoop's drain).
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	select {
	case s.reqs <- req:
	case <-s.quit:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("append: %w", ctx.Err())
	}
	res := <-req.done
	return res.stamps, res.err
}

// writeLoop is the single writer: it takes one request, drains whatever else
// is waiting (up to MaxBatch records) and commits them in one transaction.
// While it commits, new requests queue on the channel, so the next batch is
// as large as the load.
func (s *Store) writeLoop() {
	defer close(s.writerDone)
	var batch []*appendReq
	// Acks only arm a timer: their offsets ride along with the next record
	// commit, or are committed alone when it fires, whichever comes first.
	flush := time.NewTimer(s.opts.OffsetFlushDelay)
	flush.Stop()
	defer flush.Stop()
	armed := false
	for {
		var first *appendReq
		select {
		case first = <-s.reqs:
		case <-s.offsetKick:
			if !armed {
				armed = true
				flush.Reset(s.opts.OffsetFlushDelay)
			}
			continue
		case <-flush.C:
			armed = false
			s.commit(nil) // a no-op if a record commit took them already
			continue
		case <-s.quit:
			// Take no more records. Close ends the subscriptions and waits
			// for them, which may record their last acks, then says when.
			<-s.stopWriter
			s.commit(nil) // flush acknowledged offsets; a no-op without any
			return
		}
		batch = append(batch[:0], first)
		n := len(first.recs)
		// Drain what is waiting, then yield a few times while fewer requests
		// are in the batch than calls are in flight. inflight counts calls
		// until they have their result, so it includes the callers the last
		// commit just answered: under load they append again at once, and
		// waiting for them fills the batch (measured: 232 instead of 155
		// events per commit with 256 appenders; docs/performance.md). The
		// wait is bounded by maxYields.
		yields := 0
	drain:
		for n < s.opts.MaxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += len(r.recs)
			default:
				if int64(len(batch)) < s.inflight.Load() && yields < maxYields {
					yields++
					runtime.Gosched()
					continue
				}
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit writes batch in one bbolt transaction and answers every request.
func (s *Store) commit(batch []*appendReq) {
	s.mu.RLock()
	head, failed := s.head, s.failed
	s.mu.RUnlock()
	if failed != nil {
		reply(batch, nil, failed)
		return
	}
	batch = checkFixed(head.Seq, batch)
	offsets := s.takePendingOffsets()
	if len(batch) == 0 && len(offsets) == 0 {
		return // an offset kick whose offsets an earlier commit already wrote
	}

	// One allocation each for the batch's stamps, keys and values; bbolt
	// needs keys and values to stay valid until the transaction ends.
	nrec, size := 0, 0
	for _, req := range batch {
		nrec += len(req.recs)
		for _, r := range req.recs {
			size += headerSize + maxWriterFields + len(r.body)
		}
	}
	stampBuf := make([]Stamp, nrec)
	stamps := make([][]Stamp, len(batch))
	next := head
	var tailBytes int
	// The tree's frontier after this commit; it replaces s.tree only once
	// the commit is durable.
	var tree frontier
	withTree := !s.opts.noTree && nrec > 0
	s.commitGate.Lock()
	defer s.commitGate.Unlock()
	began := time.Now()
	err := s.db.Update(func(tx *bolt.Tx) error {
		if s.failpoint != nil {
			if err := s.failpoint(); err != nil {
				return err
			}
		}
		log := tx.Bucket(bucketLog)
		log.FillPercent = s.opts.FillPercent
		if len(offsets) > 0 {
			ob := tx.Bucket(bucketOffsets)
			for k, seq := range offsets {
				if err := ob.Put([]byte(k), seqKey(seq)); err != nil {
					return err
				}
			}
		}
		next = head
		tailBytes = s.tailBytes
		tree = s.tree
		post := &s.post
		post.reset()
		keys := make([]byte, 8*nrec)
		vals := make([]byte, 0, size)
		var treeVal []byte // the commit's stored tree hashes: one value (tree.go)
		if withTree {
			treeVal = make([]byte, 0, (2*nrec+64)*hashSize)
		}
		st := stampBuf
		for i, req := range batch {
			if req.put != nil {
				if err := tx.Bucket(req.put.bucket).Put(req.put.key, req.put.value); err != nil {
					return err
				}
			}
			if len(req.recs) == 0 {
				continue
			}
			stamps[i] = st[:len(req.recs):len(req.recs)]
			st = st[len(req.recs):]
			for j, rec := range req.recs {
				next.Seq++
				if rec.fixed != nil {
					stampFixed(&next, rec.fixed)
				} else {
					s.stampNext(&next)
				}
				start := len(vals)
				vals, next.Hash = appendValue(vals, next.Hash, next.Seq, &next.ID, next.Time.UnixNano(), rec.body)
				key := keys[:8:8]
				keys = keys[8:]
				binary.BigEndian.PutUint64(key, next.Seq)
				if err := log.Put(key, vals[start:len(vals):len(vals)]); err != nil {
					return err
				}
				if withTree {
					hs, err := tree.append(s.leafHash.leaf(vals[start+hashSize:]))
					if err != nil {
						return err
					}
					for _, h := range hs {
						treeVal = append(treeVal, h[:]...)
					}
				}
				post.add(kindTopic, rec.topic, next.Seq)
				if rec.user != "" {
					post.add(kindUser, rec.user, next.Seq)
				}
				if rec.session != "" {
					post.add(kindSession, rec.session, next.Seq)
				}
				stamps[i][j] = Stamp{Seq: next.Seq, ID: next.ID, Time: next.Time, Hash: next.Hash}
			}
		}
		if withTree {
			tb := tx.Bucket(bucketTree)
			tb.FillPercent = 1.0
			if err := tb.Put(seqKey(uint64(tlog.StoredHashIndex(0, int64(head.Seq)))), treeVal); err != nil {
				return err
			}
			root, err := tree.root()
			if err != nil {
				return err
			}
			next.Root = root
		}
		if post.n == 0 {
			return nil
		}
		// The index entries of this commit: one block at the end of the
		// tail (see index.go).
		block := post.appendBlock(nil)
		tail := tx.Bucket(bucketTail)
		tail.FillPercent = 1.0
		if err := tail.Put(seqKey(next.Seq), block); err != nil {
			return err
		}
		tailBytes += len(block)
		if tailBytes < s.mergeThreshold {
			return nil
		}
		if err := mergeTail(tx, &s.mergePost, s.opts.Logger); err != nil {
			return err
		}
		tailBytes = 0
		if s.mergeFailpoint != nil {
			return s.mergeFailpoint()
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("ledger append failed, ledger stops taking appends until reopened: %w", err)
		s.opts.Logger.Error("ledger commit failed", "err", err)
		s.mu.Lock()
		s.failed = err
		s.mu.Unlock()
		reply(batch, nil, err)
		return
	}
	if s.opts.OnCommit != nil {
		s.opts.OnCommit(time.Since(began), nrec)
	}
	if s.afterCommit != nil {
		s.afterCommit()
	}
	s.tailBytes = tailBytes
	if withTree {
		s.tree = tree
	}
	s.commits.Add(1)
	s.committed.Add(next.Seq - head.Seq)
	s.mu.Lock()
	s.head = next
	if next.Seq != head.Seq {
		// Wake readers only for new records: an offsets- or blob-only
		// commit has nothing for them.
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	reply(batch, stamps, nil)
}

func reply(batch []*appendReq, stamps [][]Stamp, err error) {
	for i, req := range batch {
		if req.done == nil {
			continue
		}
		var st []Stamp
		if stamps != nil {
			st = stamps[i]
		}
		req.done <- appendResult{stamps: st, err: err}
	}
}

// stampNext gives h (whose Seq is already the new record's) a time that
// never goes back and a ULID strictly greater than the previous one. Only the
// writer calls it.
func (s *Store) stampNext(h *Head) {
	now := s.opts.Now()
	if now.Before(h.Time) {
		now = h.Time
	}
	ms := uint64(now.UnixMilli())
	var id ulid.ULID
	if ms <= h.ID.Time() && h.Seq > 1 {
		// Same millisecond as the last id: increment its entropy by one
		// (the ULID spec's monotonic rule). On overflow, move to the next ms.
		id = h.ID
		if incrementEntropy(&id) {
			ms = h.ID.Time() + 1
			now = time.UnixMilli(int64(ms))
			id = s.freshID(ms)
		}
	} else {
		id = s.freshID(ms)
	}
	h.ID = id
	h.Time = now.UTC()
}

func (s *Store) freshID(ms uint64) ulid.ULID {
	var id ulid.ULID
	_ = id.SetTime(ms)
	binary.BigEndian.PutUint16(id[6:8], uint16(s.rng.Uint64()))
	binary.BigEndian.PutUint64(id[8:16], s.rng.Uint64())
	// Leave headroom so same-millisecond increments do not overflow.
	id[6] &= 0x7f
	return id
}

// incrementEntropy adds one to the 80-bit entropy of id and reports overflow.
func incrementEntropy(id *ulid.ULID) bool {
	for i := len(id) - 1; i >= 6; i-- {
		id[i]++
		if id[i] != 0 {
			return false
		}
	}
	return true
}
