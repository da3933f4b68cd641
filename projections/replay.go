package projections

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
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
func Replay(ctx context.Context, store *ledger.Store, st *State, to uint64, fn func(Change)) error {
	if to == 0 {
		to = store.Head().Seq
	}
	if to <= st.Seq() {
		return nil
	}
	err := store.Scan(ctx, st.Seq()+1, to, func(r *ledger.Record) error {
		ch := st.Apply(r)
		if fn != nil {
			fn(ch)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replay to seq %d: %w", to, err)
	}
	return nil
}

// StateAt returns the state after the record seq (0: the head): the nearest
// usable snapshot at or before seq, then a replay of the records after it.
// It only reads, so it works on a read-only ledger or a backup.
func StateAt(ctx context.Context, store *ledger.Store, seq uint64) (*State, error) {
	head := store.Head().Seq
	if seq == 0 || seq > head {
		seq = head
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
// seq, or the checkpoint if it is nearer, or an empty state.
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
		st, err := UnmarshalState(b)
		if err == nil && st.Seq() <= seq {
			best = st
			break
		}
		if err != nil && !errors.Is(err, ErrBadSnapshot) {
			return nil, err
		}
		// Another format version or damaged: look further back.
		n, perr := strconv.ParseUint(strings.TrimPrefix(key, SnapshotPrefix), 10, 64)
		if perr != nil || n == 0 {
			break
		}
		upTo = SnapshotKey(n - 1)
	}
	if b, err := store.GetBlob(CheckpointKey); err == nil && b != nil {
		if st, err := UnmarshalState(b); err == nil && st.Seq() <= seq && st.Seq() > best.Seq() {
			best = st
		}
	}
	return best, nil
}

// WriteSnapshots replays the whole log and stores a periodic snapshot after
// every multiple of every that has none. It returns how many it wrote.
// The Runner does the same as it goes; this fills in a ledger that was
// written without one (or after SnapshotVersion changed).
func WriteSnapshots(ctx context.Context, store *ledger.Store, every uint64) (int, error) {
	if every == 0 {
		return 0, errors.New("write snapshots: every must be > 0")
	}
	st := New()
	written := 0
	var werr error
	err := store.Scan(ctx, 1, store.Head().Seq, func(r *ledger.Record) error {
		st.Apply(r)
		if r.Seq%every != 0 {
			return nil
		}
		if old, err := store.GetBlob(SnapshotKey(r.Seq)); err == nil && old != nil {
			if _, err := UnmarshalState(old); err == nil {
				return nil
			}
		}
		b, err := st.MarshalBinary()
		if err != nil {
			return err
		}
		if werr = store.PutBlob(ctx, SnapshotKey(r.Seq), b); werr != nil {
			return werr
		}
		written++
		return nil
	})
	if err != nil {
		return written, fmt.Errorf("write snapshots: %w", err)
	}
	return written, nil
}
