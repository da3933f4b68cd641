package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// SetFailpoint makes every later commit call fn first; a non-nil error
// aborts that commit as a disk error would.
func (s *Store) SetFailpoint(fn func() error) { s.failpoint = fn }

// BreakFileForTest replaces bbolt's file descriptor with a read-only one on
// /dev/null, so the next commit's writes really fail (EBADF) while the fd
// number stays owned by bbolt.
func BreakFileForTest(s *Store) error {
	want, err := filepath.EvalSymlinks(s.path)
	if err != nil {
		return err
	}
	want, _ = filepath.Abs(want)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target != want {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		return syscall.Dup2(int(null.Fd()), fd)
	}
	return fmt.Errorf("no open fd for %s", want)
}

// SetMergeThreshold makes the writer merge the index tail once it holds n
// bytes of posting blocks (1: at every commit). Call it before appending.
func (s *Store) SetMergeThreshold(n int) { s.mergeThreshold = n }

// SetMergeFailpoint makes every later index merge call fn after it has
// rewritten the indexes, inside the merge's transaction; a non-nil error
// aborts that commit.
func (s *Store) SetMergeFailpoint(fn func() error) { s.mergeFailpoint = fn }

// IndexTail returns the number of posting blocks in the index tail and
// their size in bytes.
func (s *Store) IndexTail() (blocks, bytes int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketTail).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			blocks++
			bytes += len(v)
		}
		return nil
	})
	return blocks, bytes, err
}

// MergedChunks returns the number of merged chunks in the user, session and
// topic indexes.
func (s *Store) MergedChunks() (n int, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketUser, bucketSession, bucketTopic} {
			n += tx.Bucket(b).Stats().KeyN
		}
		return nil
	})
	return n, err
}

// OpenReadTxs is how many bbolt read transactions are open.
func (s *Store) OpenReadTxs() int { return s.db.Stats().OpenTxN }

// SetAfterCommit makes the writer call fn after each bbolt commit has
// returned and before the head moves: the window in which bbolt already
// shows the commit to new read transactions (see scanRaw).
func (s *Store) SetAfterCommit(fn func()) { s.afterCommit = fn }

// RawLastSeq is the last seq in the log bucket as a new bbolt read
// transaction sees it, bypassing the head bound every Store read applies.
func (s *Store) RawLastSeq() (seq uint64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bucketLog).Cursor().Last(); len(k) == 8 {
			seq = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return seq, err
}

// AppendUnchecked appends events without ValidateEvent, as a ledger written
// before a validation rule existed may hold them.
func (s *Store) AppendUnchecked(ctx context.Context, events ...*eventpb.Event) ([]Stamp, error) {
	pending := make([]pendingRecord, len(events))
	for i, ev := range events {
		var err error
		if pending[i], err = eventRecord(ev); err != nil {
			return nil, err
		}
	}
	return s.submitPending(ctx, pending)
}

// StoredOffset is the durable offset of a consumer group as the file holds
// it (0: none), not counting acks the writer has not committed yet.
func (s *Store) StoredOffset(topic, group string) (uint64, error) {
	return s.storedOffset(offsetKey(topic, group), 0)
}

// BoltNoSync reports whether the store's bbolt handle skips fsync (NoSync)
// or the freelist or growth syncs.
func (s *Store) BoltNoSync() (noSync, noGrowSync bool) { return s.db.NoSync, s.db.NoGrowSync }

// WithArrayFreelist returns o with bbolt's array freelist instead of the
// default map, for BenchmarkAppendSettings (the option is not exported).
func WithArrayFreelist(o Options) Options {
	o.freelist = bolt.FreelistArrayType
	return o
}

// DataSize is the size of the ledger's data as a bbolt read transaction
// sees it (Tx.Size).
func (s *Store) DataSize() (size int64, err error) {
	err = s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	return size, err
}

// WithoutTree returns o with the Merkle tree off in the writer (the append
// benchmarks' A/B switch).
func WithoutTree(o Options) Options {
	o.noTree = true
	return o
}
