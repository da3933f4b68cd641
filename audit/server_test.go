package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// stuckStream is a server stream to a client that stops reading: its first
// Send blocks until release is closed, as a real Send does once the
// client's flow-control window is full.
type stuckStream[T any] struct {
	grpc.ServerStream // nil: the handlers use only Context and Send
	ctx               context.Context
	sent              chan struct{} // closed when the first Send starts
	release           chan struct{}
	once              sync.Once
}

func newStuckStream[T any](ctx context.Context) *stuckStream[T] {
	return &stuckStream[T]{ctx: ctx, sent: make(chan struct{}), release: make(chan struct{})}
}

func (s *stuckStream[T]) Context() context.Context { return s.ctx }

func (s *stuckStream[T]) Send(*T) error {
	s.once.Do(func() { close(s.sent) })
	select {
	case <-s.release:
		return nil
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
}

func connects(from, n int) []*eventpb.Event {
	evs := make([]*eventpb.Event, n)
	for i := range evs {
		evs[i] = &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: fmt.Sprintf("u%d", (from+i)%50),
			Session: fmt.Sprintf("s%d", from+i), Node: "node-1", Reason: "padding to grow the file quickly, padding to grow the file quickly"}
	}
	return evs
}

// TestStuckClientDoesNotStallAppends: an Events or Verify stream whose
// client has stopped reading must not hold a read transaction while its
// Send waits. bbolt's writer cannot grow its memory map while one is open,
// so hubd's appends would stall for as long as the client does. The test
// blocks the stream's first Send, then appends enough to make the file
// outgrow its map (the store starts with a small one); the appends must
// finish while the Send is still blocked.
func TestStuckClientDoesNotStallAppends(t *testing.T) {
	calls := map[string]func(*audit.Server, context.Context) (sent <-chan struct{}, release chan<- struct{}, run func() error){
		"events": func(srv *audit.Server, ctx context.Context) (<-chan struct{}, chan<- struct{}, func() error) {
			s := newStuckStream[auditpb.AuditRecord](ctx)
			return s.sent, s.release, func() error { return srv.Events(&auditpb.EventsRequest{Filter: &auditpb.Filter{}}, s) }
		},
		"verify": func(srv *audit.Server, ctx context.Context) (<-chan struct{}, chan<- struct{}, func() error) {
			s := newStuckStream[auditpb.VerifyUpdate](ctx)
			return s.sent, s.release, func() error { return srv.Verify(&auditpb.VerifyRequest{}, s) }
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			// Longer than the stall bound below.
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			path := filepath.Join(t.TempDir(), "ledger.db")
			st, err := ledger.Open(path, &ledger.Options{InitialMmapSize: 1 << 16})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, err := st.Append(ctx, connects(0, 10000)...); err != nil {
				t.Fatal(err)
			}
			srv := audit.NewServer(st, audit.WithProgressEvery(0))
			sent, release, run := call(srv, ctx)
			done := make(chan error, 1)
			go func() { done <- run() }()
			select {
			case <-sent:
			case err := <-done:
				t.Fatalf("handler ended before its first Send: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			appended := make(chan error, 1)
			go func() {
				// Three times the records the file holds: it must remap.
				_, err := st.Append(ctx, connects(10000, 30000)...)
				appended <- err
			}()
			stalled := false
			select {
			case err := <-appended:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(3 * time.Minute):
				// A stall lasts until release, so the bound costs nothing
				// when the appends pass; it only has to be far above their
				// own time, which under -race on a 2-core machine at load
				// average 20 passed 30 s (one 30,000-record commit).
				stalled = true
				t.Error("appends stalled while the stream's Send was blocked: a read transaction is held across Send")
			}
			if fi2, err := os.Stat(path); !stalled && err == nil && fi2.Size() < 2*fi.Size() {
				t.Errorf("file grew from %d to %d bytes only; the test needs it to outgrow its memory map", fi.Size(), fi2.Size())
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if stalled {
				<-appended
			}
		})
	}
}
