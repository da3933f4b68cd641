package ledger_test

import (
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// TestOverlongNamesRefused: names become bbolt keys, and bbolt refuses keys
// over 32 KiB with an error that fails the whole commit, so every name is
// capped at MaxNameLen where it enters the ledger, and nothing is written.
func TestOverlongNamesRefused(t *testing.T) {
	s := ledgertest.Open(t, nil)
	s.SetMergeThreshold(1) // merge at every commit: a long name would fail it
	long := strings.Repeat("x", ledger.MaxNameLen+1)
	atLimit := strings.Repeat("y", ledger.MaxNameLen)

	huge := connected(strings.Repeat("x", 40000), "s")
	longDevice := connected("u", "s")
	longDevice.Device = long
	for name, ev := range map[string]*eventpb.Event{"user": huge, "session": connected("u", long), "device": longDevice} {
		_, err := s.Append(ctx, connected("u", "ok"), ev)
		if !errors.Is(err, ledger.ErrInvalidEvent) || !errors.Is(err, ledger.ErrNameTooLong) {
			t.Errorf("append with a long %s: got %v; want ErrInvalidEvent and ErrNameTooLong", name, err)
		}
	}
	if h := s.Head(); h.Seq != 0 {
		t.Fatalf("head after refused appends: got %d; want 0", h.Seq)
	}

	pub := ledger.NewPublisher(s)
	if err := pub.Publish(long, message.NewMessage("m", nil)); !errors.Is(err, ledger.ErrNameTooLong) {
		t.Errorf("publish on a long topic: got %v; want ErrNameTooLong", err)
	}
	if err := s.PutBlob(ctx, long, []byte("v")); !errors.Is(err, ledger.ErrNameTooLong) {
		t.Errorf("put blob with a long key: got %v; want ErrNameTooLong", err)
	}
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: long})
	if _, err := sub.Subscribe(ctx, "jobs"); !errors.Is(err, ledger.ErrNameTooLong) {
		t.Errorf("subscribe with a long group name: got %v; want ErrNameTooLong", err)
	}
	sub.Close()
	sub = ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	if _, err := sub.Subscribe(ctx, long); !errors.Is(err, ledger.ErrNameTooLong) {
		t.Errorf("subscribe to a long topic: got %v; want ErrNameTooLong", err)
	}
	sub.Close()

	// Names at the limit work end to end, through a merge, and the ledger
	// goes on taking appends.
	atLimitDevice := connected(atLimit, atLimit)
	atLimitDevice.Device = atLimit
	if _, err := s.Append(ctx, atLimitDevice); err != nil {
		t.Fatalf("append with names of MaxNameLen bytes: %v", err)
	}
	if err := pub.Publish(atLimit, message.NewMessage("m", []byte("p"))); err != nil {
		t.Fatalf("publish on a topic of MaxNameLen bytes: %v", err)
	}
	if err := s.PutBlob(ctx, atLimit, []byte("v")); err != nil {
		t.Fatalf("put blob with a key of MaxNameLen bytes: %v", err)
	}
	if _, err := s.Append(ctx, connected("u", "after")); err != nil {
		t.Fatalf("append after: %v", err)
	}
	if err := s.Err(); err != nil {
		t.Fatalf("ledger health: got %v; want nil", err)
	}
}

// TestOverlongNameInTailDoesNotStopLedger: a ledger written before names
// were capped can hold a name too long for a bbolt key in its index tail.
// Merging it must not fail the commit (which would fail every later commit,
// even after reopen): the name is left out of the index, with a warning.
func TestOverlongNameInTailDoesNotStopLedger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	var logs syncbuf.Buffer
	opts := &ledger.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	s, err := ledger.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 40000)
	if _, err := s.AppendUnchecked(ctx, connected(huge, "s1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopen, as the reviewer's repro did, and merge at the next commit.
	s, err = ledger.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetMergeThreshold(1)
	for i := 0; i < 3; i++ {
		if _, err := s.Append(ctx, connected("u", "s2")); err != nil {
			t.Fatalf("append %d after an over-long name reached the tail: %v", i, err)
		}
	}
	if blocks, _, err := s.IndexTail(); err != nil || blocks != 0 {
		t.Fatalf("index tail after merges: got %d blocks, %v; want 0", blocks, err)
	}
	if !strings.Contains(logs.String(), "too long") {
		t.Errorf("log: got %q; want a warning about the over-long name", logs.String())
	}
	var got []uint64
	if err := s.BySession(ctx, "s1", 0, 0, func(r *ledger.Record) error { got = append(got, r.Seq); return nil }); err != nil || len(got) != 1 {
		t.Errorf("session s1 of the same record: got %v, %v; want [1] (only the long name is left out)", got, err)
	}
	if n, err := s.Verify(ctx, 0, 0, nil); err != nil || n != 4 {
		t.Fatalf("verify: got %d, %v; want 4 records", n, err)
	}
}
