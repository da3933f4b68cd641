package ledger_test

import (
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

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
