package hub_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// memTransport is a Transport in memory: the test plays the client on
// the other side of two channels. With stalled set, Send blocks until the
// transport is aborted, as a client that stopped reading blocks a real
// stream.
type memTransport struct {
	ctx     context.Context
	cancel  context.CancelFunc
	in      chan *hubpb.ClientFrame
	out     chan *hubpb.ServerFrame
	stalled bool

	mu      sync.Mutex
	closed  chan struct{}
	end     error
	ended   bool
	aborted chan struct{}
	abort   sync.Once
}

var _ hub.Transport = (*memTransport)(nil)

func newMem(t *testing.T) *memTransport {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &memTransport{ctx: ctx, cancel: cancel, in: make(chan *hubpb.ClientFrame, 16), out: make(chan *hubpb.ServerFrame, 4096),
		closed: make(chan struct{}), aborted: make(chan struct{})}
}

func (m *memTransport) Context() context.Context { return m.ctx }
func (m *memTransport) Remote() string           { return "" }

func (m *memTransport) Recv() (*hubpb.ClientFrame, error) {
	select {
	case f, ok := <-m.in:
		if !ok {
			return nil, io.EOF
		}
		return f, nil
	case <-m.closed:
		return nil, errors.New("closed")
	case <-m.aborted:
		return nil, errors.New("aborted")
	}
}

func (m *memTransport) Send(frame *hub.Frame) error {
	f := frame.Message()
	if m.stalled && f.GetWelcome() == nil {
		<-m.aborted
		return errors.New("aborted")
	}
	select {
	case m.out <- f:
		return nil
	case <-m.aborted:
		return errors.New("aborted")
	}
}

func (m *memTransport) Close(end error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		panic("Close called twice")
	}
	m.ended, m.end = true, end
	close(m.closed)
}

func (m *memTransport) Abort() { m.abort.Do(func() { close(m.aborted); m.cancel() }) }

// next returns the next server frame, failing after a few seconds.
func (m *memTransport) next(t *testing.T) *hubpb.ServerFrame {
	t.Helper()
	select {
	case f := <-m.out:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no server frame within 5s")
		return nil
	}
}

// core is a hub wired to a real ledger and projections, with no
// transport of its own.
type core struct {
	srv   *hub.Server
	store *ledger.Store
}

// newCore starts the core; wrap, when given, wraps its Publisher.
func newCore(t *testing.T, cfg hub.Config, wrap ...func(hub.Publisher) hub.Publisher) *core {
	t.Helper()
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var srv *hub.Server
	runner := projections.NewRunner(store, projections.Config{OnChange: func(ch projections.Change) { srv.Enforce(ch) }})
	cfg.AdminTokens = map[string]string{adminToken: "ops"}
	cfg.Logger = slog.New(slog.DiscardHandler)
	var pub hub.Publisher = ledger.NewPublisher(store)
	for _, w := range wrap {
		pub = w(pub)
	}
	if srv, err = hub.New(hub.Ports{Publisher: pub, Projection: runner, History: store}, cfg); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := runner.Close(); err != nil {
			t.Error(err)
		}
		store.Close()
	})
	return &core{srv: srv, store: store}
}

// serve runs a session of user over m and returns its Welcome and a
// channel with what Serve returned.
func (c *core) serve(t *testing.T, m *memTransport, user string) (*hubpb.Welcome, <-chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.srv.Serve(m) }()
	m.in <- &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: "d"}}}
	w := m.next(t).GetWelcome()
	if w == nil {
		t.Fatal("first frame is not a Welcome")
	}
	return w, done
}

func (c *core) append(t *testing.T, ev *eventpb.Event) ledger.Stamp {
	t.Helper()
	st, err := c.store.Append(ctxT(t), ev)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}

// endOf returns the session_disconnected event of session id, waiting
// for it a few seconds.
func (c *core) endOf(t *testing.T, id string) *eventpb.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var end *eventpb.Event
		err := c.store.BySession(ctxT(t), id, 0, 0, func(r *ledger.Record) error {
			if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED {
				end = r.Event
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if end != nil {
			return end
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no end recorded for session %s", id)
	return nil
}

func waitServe(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// TestCoreOverMemoryTransport runs the session core with no network at
// all: admission, a notification, a kick from the log (Disconnect frame,
// recorded end, Serve's result handed to the transport's Close), a
// client's Goodbye, an idle timeout, and a client that stops reading.
func TestCoreOverMemoryTransport(t *testing.T) {
	t.Run("kick", func(t *testing.T) {
		c := newCore(t, hub.Config{})
		m := newMem(t)
		w, done := c.serve(t, m, "ann")
		note := c.append(t, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: "ann", Actor: "ops",
			Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "t", Payload: []byte("hi")}}})
		if n := m.next(t).GetNotification(); n.GetSeq() != note.Seq || string(n.GetPayload()) != "hi" {
			t.Fatalf("notification: got %v; want seq %d with payload hi", n, note.Seq)
		}
		kick := c.append(t, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: "ann", Actor: "ops", Reason: "in memory",
			Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_USER,
				Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}}})
		d := m.next(t).GetDisconnect()
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != kick.ID.String() || d.GetReason() != "in memory" {
			t.Fatalf("disconnect frame: got %v; want kicked by %s", d, kick.ID)
		}
		err := waitServe(t, done)
		var end *hub.Disconnect
		if !errors.As(err, &end) || end.Cause != hub.CauseKicked || end.EventID != kick.ID {
			t.Fatalf("Serve returned %v; want the kick's Disconnect", err)
		}
		if m.end != err {
			t.Errorf("transport closed with %v; want what Serve returned", m.end)
		}
		ev := c.endOf(t, w.GetSessionId())
		sd := ev.GetSessionDisconnected()
		if sd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || ulid.ULID(sd.GetCauseEventId()) != kick.ID ||
			sd.GetReconnect() != eventpb.Reconnect_RECONNECT_NOT_ALLOWED {
			t.Fatalf("recorded end: got %v; want kicked by %s, not allowed", ev, kick.ID)
		}
	})
	t.Run("goodbye", func(t *testing.T) {
		c := newCore(t, hub.Config{})
		m := newMem(t)
		w, done := c.serve(t, m, "bob")
		m.in <- &hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "bye"}}}
		if err := waitServe(t, done); err != nil {
			t.Fatalf("Serve after Goodbye: %v; want nil", err)
		}
		if sd := c.endOf(t, w.GetSessionId()).GetSessionDisconnected(); sd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
			t.Fatalf("recorded cause %v; want client_closed", sd.GetCause())
		}
	})
	t.Run("idle", func(t *testing.T) {
		c := newCore(t, hub.Config{HeartbeatInterval: 10 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
		m := newMem(t)
		w, done := c.serve(t, m, "cid")
		var sawPing bool
		var d *hubpb.Disconnect
		for d == nil {
			f := m.next(t)
			sawPing = sawPing || f.GetPing() != nil
			d = f.GetDisconnect()
		}
		if !sawPing || d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT {
			t.Fatalf("got pings %v, then %v; want pings, then idle_timeout", sawPing, d)
		}
		waitServe(t, done)
		if sd := c.endOf(t, w.GetSessionId()).GetSessionDisconnected(); sd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT {
			t.Fatalf("recorded cause %v; want idle_timeout", sd.GetCause())
		}
	})
	t.Run("stalled client", func(t *testing.T) {
		c := newCore(t, hub.Config{NotifyBuffer: 4, GracefulTimeout: 50 * time.Millisecond})
		m := newMem(t)
		m.stalled = true
		w, done := c.serve(t, m, "dee")
		for range 8 {
			c.append(t, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: "dee", Actor: "ops",
				Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "t"}}})
		}
		err := waitServe(t, done)
		select {
		case <-m.aborted:
		default:
			t.Error("a client that does not read was not aborted")
		}
		var end *hub.Disconnect
		if !errors.As(err, &end) || end.Cause != hub.CauseSlowConsumer {
			t.Fatalf("Serve returned %v; want slow_consumer", err)
		}
		if sd := c.endOf(t, w.GetSessionId()).GetSessionDisconnected(); sd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER {
			t.Fatalf("recorded cause %v; want slow_consumer", sd.GetCause())
		}
	})
}
