package projections_test

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
)

// TestStartReportsWhatIsPastTheHead: after the newest records of a ledger
// were lost (a truncated tail, a restored older file under newer blobs), the
// checkpoint and a periodic snapshot point past the head. Start logs them
// with their seqs and the head, counts them, uses neither and rebuilds the
// state from the log.
func TestStartReportsWhatIsPastTheHead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 30 {
		if _, err := s.Append(ctx, connect("u", "d", "s"+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	r := startRunner(t, s, projections.Config{SnapshotEvery: 10})
	if err := r.Close(); err != nil { // the checkpoint at 30
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for seq := uint64(21); seq <= 30; seq++ {
			if err := tx.Bucket([]byte("log")).Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		// The Merkle tree would catch the truncation (a read-write Open
		// refuses it): take it too, as if the file were a format v2 one,
		// whose tree Open builds from the log it finds.
		if err := tx.DeleteBucket([]byte("tree")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("magic"), []byte("sessionledger/ledger/v2"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	var logs syncbuf.Buffer
	s, err = ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r = startRunner(t, s, projections.Config{SnapshotEvery: 10, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer r.Close()
	if got := r.Stats().AheadOfHead; got != 2 {
		t.Errorf("Stats().AheadOfHead = %d; want 2 (the checkpoint and the snapshot at 30)", got)
	}
	for _, want := range []string{"checkpoint is past the head", "checkpoint_seq=30 head=20", "snapshots are past the head", "first_seq=30 last_seq=30 head=20"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log: got %q; want %q", logs.String(), want)
		}
	}
	if cp, replayed := r.StartInfo(); cp != 0 || replayed != 20 {
		t.Errorf("StartInfo = %d, %d; want a rebuild of the 20 records", cp, replayed)
	}
	r.Read(func(st *projections.State) {
		if st.Seq() != 20 || st.Live() != 20 {
			t.Errorf("state at seq %d with %d live; want 20, 20", st.Seq(), st.Live())
		}
	})
}

// TestStalledReportsARunnerBehindTheLog: a Runner that stops applying
// while the log grows (here its OnChange blocks) is reported by Stalled
// once a durable record has waited StallAfter, and no longer once it has
// caught up.
func TestStalledReportsARunnerBehindTheLog(t *testing.T) {
	s := ledgertest.Open(t, nil)
	block := make(chan struct{})
	blocking := make(chan struct{}, 1)
	r := startRunner(t, s, projections.Config{StallAfter: 100 * time.Millisecond, OnChange: func(ch projections.Change) {
		if ch.Seq == 2 {
			blocking <- struct{}{}
			<-block
		}
	}})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.Append(ctx, connect("u", "d", "s1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.WaitApplied(ctx, st[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := r.Stalled(); err != nil {
		t.Fatalf("Stalled of a Runner at the head = %v; want nil", err)
	}
	if _, err := s.Append(ctx, connect("u", "d", "s2")); err != nil {
		t.Fatal(err)
	}
	<-blocking
	if err := r.Stalled(); err != nil {
		t.Fatalf("Stalled at once = %v; want nil until a record waited StallAfter", err)
	}
	time.Sleep(150 * time.Millisecond)
	err = r.Stalled()
	if !errors.Is(err, projections.ErrStalled) || !strings.Contains(err.Error(), "applied seq 1, head seq 2: seq 2 has waited") {
		t.Fatalf("Stalled after StallAfter = %v; want ErrStalled naming applied seq 1 and head 2", err)
	}
	close(block)
	if err := r.WaitApplied(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := r.Stalled(); err != nil {
		t.Fatalf("Stalled after catching up = %v; want nil", err)
	}
}

// TestStalledReadsAnotherTopicAtTheHead: a record of another topic at the
// head is never delivered by the subscription; nobody waits for it, so
// nothing reads it. Stalled must not call the Runner stalled for it: it
// has it read.
func TestStalledReadsAnotherTopicAtTheHead(t *testing.T) {
	s := ledgertest.Open(t, nil)
	r := startRunner(t, s, projections.Config{StallAfter: 50 * time.Millisecond})
	defer r.Close()
	if err := ledger.NewPublisher(s).Publish("other", message.NewMessage("m1", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := r.Stalled(); err != nil {
			t.Fatalf("Stalled = %v; want the other topic's record read, not a stall", err)
		}
		if r.Applied() == s.Head().Seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("applied %d; want the head %d", r.Applied(), s.Head().Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(60 * time.Millisecond)
	if err := r.Stalled(); err != nil {
		t.Fatalf("Stalled = %v; want nil", err)
	}
}
