package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Blob keys in the ledger file's side bucket.
const (
	// CheckpointKey holds the Runner's latest checkpoint.
	CheckpointKey = "projections/checkpoint"
	// SnapshotPrefix starts the keys of the periodic snapshots, one per
	// multiple of Config.SnapshotEvery: SnapshotPrefix + 20-digit seq.
	SnapshotPrefix = "projections/snap/"
)

// SnapshotKey is the blob key of the periodic snapshot taken after seq.
func SnapshotKey(seq uint64) string { return fmt.Sprintf("%s%020d", SnapshotPrefix, seq) }

// Replay applies the records after st.Seq() up to and including to (0: the
// head) onto st, in order, calling fn (if not nil) with each change.
//
// Without fn, records are read and decoded by a second goroutine while this
// one applies them (replay goes at the speed of the slower of the two), and
// decoded only as far as the reducer reads them (see newDecoder): the state
// is the same as with full records, several times faster. With fn, every
// record is decoded in full, since Change.Record carries it to fn.
func Replay(ctx context.Context, store *ledger.Store, st *State, to uint64, fn func(Change)) error {
	if to == 0 {
		to = store.Head().Seq
	}
	if to <= st.Seq() {
		return nil
	}
	var err error
	if fn != nil {
		next := st.Seq() + 1
		err = store.Scan(ctx, next, to, func(r *ledger.Record) error {
			if err := ledger.CheckNext(&next, r.Seq); err != nil {
				return err
			}
			fn(st.Apply(r))
			return nil
		})
		if err == nil {
			err = ledger.CheckNext(&next, to+1)
		}
	} else {
		err = replayRaw(ctx, store, st, to)
	}
	if err != nil {
		return fmt.Errorf("replay to seq %d: %w", to, err)
	}
	return nil
}

// replayRaw is Replay without fn: ScanRaw and the reducer's own decoding,
// on two goroutines.
func replayRaw(ctx context.Context, store *ledger.Store, st *State, to uint64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	free := make(chan *replayBatch, replayBatches)
	for i := 0; i < replayBatches; i++ {
		free <- new(replayBatch)
	}
	full := make(chan *replayBatch, replayBatches)
	var scanErr error
	go func() {
		defer close(full)
		scanErr = scanDecoded(ctx, store, st.Seq()+1, to, free, full)
	}()
	for b := range full {
		for i := range b.n {
			st.apply(&b.recs[i], false)
		}
		free <- b
	}
	// full is closed: the reader is done and scanErr is set.
	return scanErr
}

// replayBatch carries decoded records from the reader to the applier. Its
// records and slots are reused once applied. The records hold what Apply
// reads: seq, id, time and the event, not the topic or watermill fields.
type replayBatch struct {
	n     int
	recs  [replayBatchLen]ledger.Record
	slots [replayBatchLen]eventpb.Slot
}

const (
	replayBatchLen = 256
	replayBatches  = 4
)

// newDecoder returns the decoder replay reads events with. It decodes
// in full only the types Apply reads more of than their type (sessions,
// kicks, bans, revocations, token refreshes, drains); notifications,
// rejected connects, refused admin calls, refused refreshes and unknown
// types keep only their type, and cost no strings. It interns devices, nodes, actors and reasons (the sessions and
// bans in the state share the copies), and copies cause ids into the slot:
// a batch is applied after the read transaction that owned its bytes ended.
func newDecoder() *eventpb.Decoder {
	return eventpb.NewDecoder(eventpb.DecoderOptions{
		Only: []eventpb.EventType{
			eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED,
			eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, eventpb.EventType_EVENT_TYPE_KICK_REQUESTED,
			eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED,
			eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED,
			eventpb.EventType_EVENT_TYPE_NODE_DRAINED,
		},
		Intern: true,
	})
}

// scanDecoded reads records from..to, decodes them into batches taken from
// free and sends the batches on full, in order.
func scanDecoded(ctx context.Context, store *ledger.Store, from, to uint64, free <-chan *replayBatch, full chan<- *replayBatch) error {
	var b *replayBatch
	dec := newDecoder()
	next := from
	err := store.ScanRaw(ctx, from, to, func(raw *ledger.RawRecord) error {
		if err := ledger.CheckNext(&next, raw.Seq); err != nil {
			return err
		}
		if b == nil {
			select {
			case b = <-free:
				b.n = 0
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r := &b.recs[b.n]
		*r = ledger.Record{Seq: raw.Seq, ID: raw.ID, Time: raw.Time}
		if raw.Event != nil {
			ev, err := dec.Decode(&b.slots[b.n], raw.Event)
			if err != nil {
				return fmt.Errorf("%w: seq %d: %v", ledger.ErrCorrupt, raw.Seq, err)
			}
			r.Event = ev
		}
		b.n++
		if b.n == replayBatchLen {
			full <- b // buffered for every batch there is: never blocks
			b = nil
		}
		return nil
	})
	if err == nil {
		err = ledger.CheckNext(&next, to+1)
	}
	if b != nil && b.n > 0 && err == nil {
		full <- b
	}
	return err
}

// StateAt returns the state after the record seq (0: the head): the nearest
// usable snapshot at or before seq, then a replay of the records after it.
// A seq beyond the head is ErrBeyondHead. It only reads, so it works on a
// read-only ledger or a backup.
func StateAt(ctx context.Context, store *ledger.Store, seq uint64) (*State, error) {
	head := store.Head().Seq
	if seq == 0 {
		seq = head
	}
	if seq > head {
		return nil, fmt.Errorf("state at seq %d: %w (head %d)", seq, ErrBeyondHead, head)
	}
	st, err := nearestSnapshot(store, seq)
	if err != nil {
		return nil, err
	}
	if err := Replay(ctx, store, st, seq, nil); err != nil {
		return nil, err
	}
	return st, nil
}

// StateAtTime returns the state after every record whose time is at or
// before t: who was connected, and which bans were recorded, at t. Judge
// ban expiry with State.BanAt(user, t).
func StateAtTime(ctx context.Context, store *ledger.Store, t time.Time) (*State, error) {
	after, err := store.SeqAtTime(t.Add(time.Nanosecond))
	if err != nil {
		return nil, err
	}
	if after <= 1 {
		return New(), nil // nothing had happened yet
	}
	return StateAt(ctx, store, after-1)
}

// nearestSnapshot returns the newest usable periodic snapshot at or before
// seq, or the checkpoint if it is nearer, or an empty state. A snapshot of
// another version is skipped on its header, without decoding the rest; one
// that is damaged or does not match the log is skipped too.
func nearestSnapshot(store *ledger.Store, seq uint64) (*State, error) {
	best := New()
	upTo := SnapshotKey(seq)
	for {
		key, b, err := store.LastBlob(SnapshotPrefix, upTo)
		if err != nil {
			return nil, err
		}
		if key == "" {
			break
		}
		if v, at, ok := snapshotHeader(b); ok && v == SnapshotVersion && at <= seq {
			st, err := loadStored(store, b)
			if err == nil {
				best = st
				break
			}
			if !errors.Is(err, ErrBadSnapshot) {
				return nil, err
			}
		}
		// Another format version, damaged or of another log: look further back.
		n, perr := strconv.ParseUint(strings.TrimPrefix(key, SnapshotPrefix), 10, 64)
		if perr != nil || n == 0 {
			break
		}
		upTo = SnapshotKey(n - 1)
	}
	b, err := store.GetBlob(CheckpointKey)
	if err != nil {
		return nil, err
	}
	if v, at, ok := snapshotHeader(b); b != nil && ok && v == SnapshotVersion && at <= seq && at > best.Seq() {
		st, err := loadStored(store, b)
		if err == nil {
			best = st
		} else if !errors.Is(err, ErrBadSnapshot) {
			return nil, err
		}
	}
	return best, nil
}

// WriteSnapshots replays the whole log and stores a periodic snapshot after
// every multiple of every that has no usable one (none, another version,
// damaged, or not matching the log). It returns how many it wrote. The
// Runner does the same as it goes; this fills in a ledger that was written
// without them (or after SnapshotVersion changed).
func WriteSnapshots(ctx context.Context, store *ledger.Store, every uint64) (int, error) {
	if every == 0 {
		return 0, errors.New("write snapshots: every must be > 0")
	}
	st := New()
	written := 0
	head := store.Head().Seq
	// Replay up to each multiple and write its snapshot between scans: a
	// write must not wait while this goroutine holds a read transaction,
	// since a commit that grows the file waits for every reader (bbolt's
	// remap), which would deadlock.
	for at := every; at <= head; at += every {
		if err := Replay(ctx, store, st, at, nil); err != nil {
			return written, fmt.Errorf("write snapshots: %w", err)
		}
		if usableSnapshot(store, at) {
			continue
		}
		b, err := encodeStored(store, st)
		if err != nil {
			return written, fmt.Errorf("write snapshots: %w", err)
		}
		if err := store.PutBlob(ctx, SnapshotKey(at), b); err != nil {
			return written, fmt.Errorf("write snapshots: %w", err)
		}
		written++
	}
	return written, nil
}

// usableSnapshot reports whether the periodic snapshot stored for seq is
// one of this version at seq that matches the log.
func usableSnapshot(store *ledger.Store, seq uint64) bool {
	b, err := store.GetBlob(SnapshotKey(seq))
	if err != nil || b == nil {
		return false
	}
	if v, at, ok := snapshotHeader(b); !ok || v != SnapshotVersion || at != seq {
		return false
	}
	_, err = loadStored(store, b)
	return err == nil
}
