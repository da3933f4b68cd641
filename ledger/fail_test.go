package ledger_test

import (
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// TestCloseFailsWaitingAppenders closes the ledger under load: every append
// either succeeded (and is in the file after reopen) or got ErrClosed, and
// none hangs.
func TestCloseFailsWaitingAppenders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ok []ledger.Stamp
	var closedErrs atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				if i == 2 {
					started <- struct{}{}
				}
				st, err := s.Append(ctx, connected("u", "s"))
				if errors.Is(err, ledger.ErrClosed) {
					closedErrs.Add(1)
					return
				}
				if err != nil {
					t.Errorf("append: got %v; want success or ErrClosed", err)
					return
				}
				mu.Lock()
				ok = append(ok, st...)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 64; i++ {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if closedErrs.Load() != 64 {
		t.Fatalf("appenders told ErrClosed: got %d; want 64", closedErrs.Load())
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ledgertest.Check(t, ro)
	if ro.Head().Seq != uint64(len(ok)) {
		t.Fatalf("head: got %d; want the %d successful appends", ro.Head().Seq, len(ok))
	}
	for _, st := range ok {
		r, err := ro.Get(st.Seq)
		if err != nil || r.ID != st.ID {
			t.Fatalf("acked seq %d: got %v, %v", st.Seq, r, err)
		}
	}
}

// TestFailedCommitFailsEveryWaiterAndSticks injects a commit failure: every
// appender of the failing batch gets the error, later appends fail too
// (fail closed), and nothing of the failed batch is in the log.
func TestFailedCommitFailsEveryWaiterAndSticks(t *testing.T) {
	s := ledgertest.Open(t, nil)
	if _, err := s.Append(ctx, connected("u", "before")); err != nil {
		t.Fatal(err)
	}
	diskFull := errors.New("no space left on device")
	s.SetFailpoint(func() error { return diskFull })
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Append(ctx, connected("u", "during"))
			if !errors.Is(err, diskFull) {
				t.Errorf("append during failure: got %v; want the disk error", err)
				return
			}
			failed.Add(1)
		}()
	}
	wg.Wait()
	if failed.Load() != 50 {
		t.Fatalf("appenders that saw the failure: got %d; want 50", failed.Load())
	}
	s.SetFailpoint(nil)
	if _, err := s.Append(ctx, connected("u", "after")); !errors.Is(err, diskFull) {
		t.Fatalf("append after a failed commit: got %v; want the sticky failure", err)
	}
	if h := s.Head(); h.Seq != 1 {
		t.Fatalf("head: got %d; want 1 (nothing of the failed batches)", h.Seq)
	}
}

// TestRealWriteFailure swaps the file descriptor under bbolt for a read-only one, so the next
// commit's write really fails: the appender gets an error, not a success.
func TestRealWriteFailure(t *testing.T) {
	s, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(ctx, connected("u", "before")); err != nil {
		t.Fatal(err)
	}
	if err := ledger.BreakFileForTest(s); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, connected("u", "after")); err == nil {
		t.Fatal("append with the file closed underneath: got success")
	}
	if _, err := s.Append(ctx, connected("u", "later")); err == nil {
		t.Fatal("append after a failed commit: got success")
	}
}

// TestReadsStopAtDurableHead holds the writer between bbolt's commit and
// the head's move — the window in which bbolt shows a commit to new read
// transactions before its last fdatasync — and checks that no read, and no
// subscriber (one waiting since before the window, one that subscribes in
// it), sees the record until the append has returned.
func TestReadsStopAtDurableHead(t *testing.T) {
	s := ledgertest.Open(t, nil)
	if _, err := s.Append(ctx, connected("u1", "s1")); err != nil {
		t.Fatal(err)
	}
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, ledger.EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if m := receive(t, msgs, "first delivery"); m.Metadata.Get(ledger.MetadataSeq) != "1" {
		t.Fatalf("first delivery: got seq %s; want 1", m.Metadata.Get(ledger.MetadataSeq))
	} else {
		m.Ack()
	}

	inWindow, release := make(chan struct{}), make(chan struct{})
	var once, releaseOnce sync.Once
	releaseWindow := func() { releaseOnce.Do(func() { close(release) }) }
	// A check that fails in the window must not leave the writer held:
	// the ledger's Close (a cleanup) waits for it.
	defer releaseWindow()
	s.SetAfterCommit(func() {
		once.Do(func() {
			close(inWindow)
			<-release
		})
	})
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, connected("u2", "s2"))
		appended <- err
	}()
	<-inWindow
	if raw, err := s.RawLastSeq(); err != nil || raw != 2 {
		t.Fatalf("bbolt's view in the window: got last seq %d, %v; want 2 (the window is not real)", raw, err)
	}
	if h := s.Head(); h.Seq != 1 {
		t.Fatalf("head in the window: got %d; want 1", h.Seq)
	}
	if _, err := s.Get(2); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("get 2 before its append returned: got %v; want ErrNotFound", err)
	}
	var seqs []uint64
	collect := func(r *ledger.Record) error { seqs = append(seqs, r.Seq); return nil }
	reads := map[string]func() error{
		"Scan":      func() error { return s.Scan(ctx, 0, 0, collect) },
		"Scan to 2": func() error { return s.Scan(ctx, 1, 2, collect) },
		"ScanRaw": func() error {
			return s.ScanRaw(ctx, 0, 0, func(r *ledger.RawRecord) error { seqs = append(seqs, r.Seq); return nil })
		},
		"ScanTime":  func() error { return s.ScanTime(ctx, time.Time{}, time.Now().Add(time.Hour), collect) },
		"ByUser u2": func() error { return s.ByUser(ctx, "u2", 0, 0, collect) },
		"BySession": func() error { return s.BySession(ctx, "s2", 0, 2, collect) },
		"ByTopic":   func() error { return s.ByTopic(ctx, ledger.EventsTopic, 0, 0, collect) },
	}
	for name, read := range reads {
		seqs = seqs[:0]
		if err := read(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, seq := range seqs {
			if seq > 1 {
				t.Errorf("%s: got seq %d before its append returned; want none past the head 1", name, seq)
			}
		}
	}
	if seq, err := s.SeqAtTime(time.Now().Add(time.Hour)); err != nil || seq != 2 {
		t.Errorf("seq at a time past the log: got %d, %v; want head+1 = 2", seq, err)
	}
	if n, err := s.Verify(ctx, 0, 0, nil); err != nil || n != 1 {
		t.Errorf("verify: got %d records, %v; want 1", n, err)
	}
	select {
	case m := <-msgs:
		t.Fatalf("subscriber got seq %s before its append returned", m.Metadata.Get(ledger.MetadataSeq))
	case <-time.After(50 * time.Millisecond):
	}
	// That subscriber was already waiting for the writer's wake-up, which
	// comes only once the head moved: it never reads in the window. One that
	// subscribes in the window, from seq 2, reads at once, and only the
	// subscriber's own bound (readTopic) keeps seq 2 from it.
	late := ledger.NewSubscriber(s, ledger.SubscriberConfig{StartFrom: 2})
	defer late.Close()
	lateMsgs, err := late.Subscribe(ctx, ledger.EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-lateMsgs:
		t.Fatalf("subscriber from seq 2, subscribed in the window, got seq %s before its append returned", m.Metadata.Get(ledger.MetadataSeq))
	case <-time.After(50 * time.Millisecond):
	}

	// A backup begins between commits: it waits out the window and then
	// holds the record, whose append has returned by then.
	backedUp := make(chan uint64, 1)
	go func() {
		last, err := s.BackupTo(ctx, io.Discard)
		if err != nil {
			t.Error(err)
		}
		backedUp <- last
	}()
	select {
	case last := <-backedUp:
		t.Fatalf("backup began inside the window (last seq %d)", last)
	case <-time.After(50 * time.Millisecond):
	}

	releaseWindow()
	if last := <-backedUp; last != 2 {
		t.Errorf("backup after the window: got last seq %d; want 2", last)
	}
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(2); err != nil {
		t.Fatalf("get 2 after its append returned: %v", err)
	}
	for name, in := range map[string]<-chan *message.Message{"subscriber": msgs, "subscriber from seq 2": lateMsgs} {
		m := receive(t, in, name+" after the append returned")
		if got := m.Metadata.Get(ledger.MetadataSeq); got != "2" {
			t.Fatalf("%s after the append: got seq %s; want 2", name, got)
		}
		m.Ack()
	}
}
