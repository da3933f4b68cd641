package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/stallproxy"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// waitFor polls cond every 5ms for at most d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitRead waits until the client has read n notifications from the
// current stream: handed over, or held for an application that takes
// nothing.
func waitRead(t *testing.T, c *client.Client, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d notifications read from the stream", n), func() bool {
		return c.Stats().Delivered+uint64(client.Held(c)) >= uint64(n)
	})
}

// TestSilentConnectionIsLost: a TCP proxy between client and hub stops
// forwarding without closing anything. The client must notice within three
// heartbeats, report the end as lost, and resume over a new connection.
func TestSilentConnectionIsLost(t *testing.T) {
	const hb = 100 * time.Millisecond
	h := newHub(t, hub.Config{HeartbeatInterval: hb, GracefulTimeout: 200 * time.Millisecond})
	p := stallproxy.New(t, h.addr)
	r := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, p.Addr(), append(r.options(), client.WithUser("ray", "d"), fast)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	first := waitConnect(t, r)

	p.Stall()
	start := time.Now()
	var d client.Disconnect
	select {
	case d = <-c.Disconnects():
	case <-time.After(3 * time.Second):
		t.Fatal("no disconnect within 3s of the connection going silent")
	}
	took := time.Since(start)
	if d.Cause != client.CauseLost || d.FromFrame || !d.WillReconnect || d.Session != first.ID || !strings.Contains(d.Reason, "nothing from the server") {
		t.Fatalf("disconnect = %+v; want lost (silent connection) of %s, reconnecting", d, first.ID)
	}
	if took < 2*hb {
		t.Fatalf("ended %s after the stall; want about 3 heartbeats (%s)", took, 3*hb)
	}
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID {
		t.Fatalf("resumed from %q; want %q", second.ResumedFrom, first.ID)
	}
	// The new session works: over a new connection, not the silent one.
	seq := mustNotify(t, h, "ray", "after-silence")
	if n := nextNote(t, c); n.Seq != seq {
		t.Fatalf("notification seq %d; want %d", n.Seq, seq)
	}
}

// TestDisconnectNotBehindUnreadNotifications: with a one-slot channel and
// three notifications the application never reads, pings are still
// answered and a not_allowed kick ends the client at once.
func TestDisconnectNotBehindUnreadNotifications(t *testing.T) {
	h := newHub(t, hub.Config{HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	c := dial(t, h, "quinn", "d", client.WithBuffer(1))
	seqs := mustNotifyEach(t, h, "quinn", "1", "2", "3")
	waitRead(t, c, 3)
	// Twelve heartbeats with the application not reading: unanswered
	// pings would end the session as idle.
	time.Sleep(600 * time.Millisecond)
	rep := mustKick(t, h, &hubpb.KickRequest{User: "quinn", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	select {
	case <-c.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("the kick was not reported within 2s")
	}
	if d := waitDone(t, c); d.Cause != client.CauseKicked || d.EventID != rep.GetEventId() {
		t.Fatalf("end = %+v; want the kick", d)
	}
	ends := 0
	for _, r := range h.events(t, 1) {
		if r.Event.GetType() == tDisconnected {
			ends++
			if cause := r.Event.GetSessionDisconnected().GetCause(); cause != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED {
				t.Fatalf("session ended as %v; want kicked (pongs answered)", cause)
			}
		}
	}
	if ends != 1 {
		t.Fatalf("%d session ends; want 1", ends)
	}
	// The channel holds what the application could take; the rest was
	// dropped unacknowledged.
	if n, ok := <-c.Notifications(); !ok || n.Seq != seqs[0] {
		t.Fatalf("first notification = %+v, %v; want seq %d", n, ok, seqs[0])
	}
	if _, ok := <-c.Notifications(); ok {
		t.Fatal("notifications channel still open")
	}
	if s := c.Stats(); s.Delivered != 1 {
		t.Fatalf("stats = %+v; want 1 delivered", s)
	}
}

// TestDroppedBacklogIsRedelivered: what the application had not taken
// when a session ended comes back, once, after the resume.
func TestDroppedBacklogIsRedelivered(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	c := dial(t, h, "uma", "d", append(r.options(), fast, client.WithBuffer(1), client.WithAutoAck())...)
	first := waitConnect(t, r)
	seqs := mustNotifyEach(t, h, "uma", "1", "2", "3", "4")
	waitRead(t, c, 4)
	mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID})
	if s := waitConnect(t, r); s.ResumedFrom != first.ID {
		t.Fatalf("resumed from %q; want %q", s.ResumedFrom, first.ID)
	}
	var got []uint64
	for range seqs {
		got = append(got, nextNote(t, c).Seq)
	}
	if !slices.Equal(got, seqs) {
		t.Fatalf("seqs %v; want %v, each once", got, seqs)
	}
}

// TestCloseFromCallbacks: Close called from each callback, or from a
// goroutine the callback waits for, returns (it never waits for the
// callbacks) and the client ends.
func TestCloseFromCallbacks(t *testing.T) {
	kick := func(t *testing.T, h *testHub, c *client.Client) {
		mustKick(t, h, &hubpb.KickRequest{SessionId: c.Session().ID})
	}
	notify := func(t *testing.T, h *testHub, c *client.Client) { mustNotify(t, h, "vic", "x") }
	for _, tc := range []struct {
		name    string
		opt     func(closeNow func()) client.Option
		trigger func(*testing.T, *testHub, *client.Client)
	}{
		{"OnDisconnect", func(closeNow func()) client.Option {
			return client.OnDisconnect(func(client.Disconnect) { closeNow() })
		}, kick},
		{"OnConnect", func(closeNow func()) client.Option {
			return client.OnConnect(func(s client.Session) {
				if s.ResumedFrom != "" {
					closeNow()
				}
			})
		}, kick},
		{"OnNotification", func(closeNow func()) client.Option {
			return client.OnNotification(func(client.Notification) { closeNow() })
		}, notify},
		{"OnFrame", func(closeNow func()) client.Option {
			return client.OnFrame(func(f *hubpb.ServerFrame) {
				if f.GetNotification() != nil {
					closeNow()
				}
			})
		}, notify},
	} {
		for _, helper := range []bool{false, true} {
			name := tc.name
			if helper {
				name += "/helper"
			}
			t.Run(name, func(t *testing.T) {
				h := newHub(t, hub.Config{})
				var cp atomic.Pointer[client.Client]
				returned := make(chan error, 1)
				var once sync.Once
				closeNow := func() {
					once.Do(func() {
						if !helper {
							returned <- cp.Load().Close()
							return
						}
						// The callback waits for a goroutine that closes
						// the client.
						closed := make(chan error, 1)
						go func() { closed <- cp.Load().Close() }()
						select {
						case err := <-closed:
							returned <- err
						case <-time.After(5 * time.Second):
							returned <- errors.New("deadlock: Close on a goroutine the callback waits for did not return")
						}
					})
				}
				c := dial(t, h, "vic", "d", fast, tc.opt(closeNow))
				cp.Store(c)
				tc.trigger(t, h, c)
				select {
				case err := <-returned:
					if err != nil {
						t.Fatalf("Close from %s: %v", name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("Close from %s did not return", name)
				}
				select {
				case <-c.Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("client did not end after Close from %s", name)
				}
				if err := c.Err(); err != nil {
					t.Fatalf("Err = %v; want nil after Close", err)
				}
			})
		}
	}
}

// TestSlowOnConnectKeepsSession: OnConnect runs while the session is
// served, so a callback that takes longer than the server's idle timeout
// does not leave its pings unanswered; what arrives meanwhile is handed
// over once it returned.
func TestSlowOnConnectKeepsSession(t *testing.T) {
	// Wide enough that a loaded machine's scheduling gaps do not pass for
	// a silent client; OnConnect sleeps twice the idle timeout.
	const hb, idle = 200 * time.Millisecond, 1200 * time.Millisecond
	h := newHub(t, hub.Config{HeartbeatInterval: hb, IdleTimeout: idle})
	entered, slept := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var afterConnect atomic.Bool
	c := dial(t, h, "yul", "d", client.OnConnect(func(client.Session) {
		once.Do(func() {
			close(entered)
			time.Sleep(2 * idle)
			afterConnect.Store(true)
			close(slept)
		})
	}))
	<-entered
	seq := mustNotify(t, h, "yul", "during")
	select {
	case <-slept:
	case <-time.After(10 * time.Second):
		t.Fatal("OnConnect did not return")
	}
	if n := nextNote(t, c); n.Seq != seq || !afterConnect.Load() {
		t.Fatalf("notification %+v (after OnConnect: %v); want seq %d after OnConnect returned", n, afterConnect.Load(), seq)
	}
	if s := c.Stats(); s.Connects != 1 {
		t.Fatalf("connects = %d; want the first session to have lasted", s.Connects)
	}
	if n := h.count(t, 1, tDisconnected); n != 0 {
		t.Fatalf("%d sessions ended while OnConnect slept %s (idle timeout %s); want none (pongs answered)", n, 2*idle, idle)
	}
}

// TestAcksReachServerWithoutBlocking: Ack only records; the writer sends
// the highest seq on the stream, at most one Ack per ack interval (and
// one with each pong), and the resume carries an ack made while
// disconnected.
func TestAcksReachServerWithoutBlocking(t *testing.T) {
	const every = 200 * time.Millisecond
	h := newHub(t, hub.Config{HeartbeatInterval: time.Hour})
	c := dial(t, h, "wes", "d", client.WithAutoAck(), client.WithAckInterval(every))
	start := time.Now()
	var last uint64
	for i := range 20 {
		last = mustNotify(t, h, "wes", string(rune('a'+i)))
	}
	for range 20 {
		nextNote(t, c)
	}
	waitFor(t, 10*time.Second, "the last ack at the server", func() bool {
		acks := h.acks.received()
		return len(acks) > 0 && acks[len(acks)-1] == last
	})
	acks := h.acks.received()
	// The first ack goes at once, the rest at most one an interval.
	most := 2 + int(time.Since(start)/every)
	if !slices.IsSorted(acks) || len(acks) > min(most, 20) {
		t.Fatalf("acks received %v within %s; want at most %d, increasing", acks, time.Since(start), min(most, 20))
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c.Ack(last + 1000) // after the end: recorded for Resume, nothing sent
	if time.Since(start) > 100*time.Millisecond || c.Resume().LastAckedSeq != last+1000 {
		t.Fatalf("Ack after Close took %s, resume state %+v", time.Since(start), c.Resume())
	}
}

// flood sends n notifications to user from 16 goroutines and returns
// their seqs in order.
func flood(t *testing.T, h *testHub, user string, n int) []uint64 {
	t.Helper()
	const workers = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	var seqs []uint64
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				rep, err := h.notify(user, "flood", "")
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seqs = append(seqs, rep.GetSeq())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	slices.Sort(seqs)
	return seqs
}

// TestClientEndsSessionWhenBacklogOverflows: an application that takes
// nothing while more than the client's backlog (512) arrives has its
// session ended by the client itself (slow consumer, no frame), and the
// client resumes. What it dropped then arrives after the resume: every
// notification, in order, once, when they are within the server's
// redelivery limit (1000 by default, which the backlog is kept below);
// otherwise the newest 1000, in order, with RedeliveryIncomplete set.
func TestClientEndsSessionWhenBacklogOverflows(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 2000 notifications")
	}
	const redeliveryLimit = 1000 // the server's default
	for _, n := range []int{900, 1100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := newHub(t, hub.Config{NotifyBuffer: 8192})
			r := newRecorder()
			gate := make(chan struct{})
			c := dial(t, h, "xan", "d", append(r.options(), sleepUntil(gate), client.WithBuffer(0))...)
			first := waitConnect(t, r)
			seqs := flood(t, h, "xan", n)
			waitFor(t, 10*time.Second, "the client's own slow_consumer end", func() bool { return len(r.disconnects()) > 0 })
			d := r.disconnects()[0]
			if d.Cause != client.CauseSlowConsumer || d.FromFrame || !d.WillReconnect || d.Session != first.ID {
				t.Fatalf("disconnect = %+v; want the client's own slow_consumer end, reconnecting", d)
			}
			if s := c.Stats(); s.Delivered != 0 {
				t.Fatalf("stats = %+v; want nothing delivered (nothing taken)", s)
			}
			// The application reads from now on; the resume comes after
			// the flood, so everything missed is in its redelivery.
			got := make(chan []client.Notification, 1)
			go func() {
				var notes []client.Notification
				timeout := time.After(30 * time.Second)
				for {
					select {
					case note, ok := <-c.Notifications():
						if ok {
							notes = append(notes, note)
						}
						if ok && note.Seq < seqs[n-1] {
							continue
						}
					case <-timeout:
					}
					got <- notes
					return
				}
			}()
			close(gate)
			second := waitConnect(t, r)
			want := seqs
			if n > redeliveryLimit {
				want = seqs[n-redeliveryLimit:]
			}
			if second.ResumedFrom != first.ID || second.Redelivering != len(want) || second.OldestRedelivered != want[0] ||
				second.RedeliveryIncomplete != (n > redeliveryLimit) {
				t.Fatalf("session %+v; want resumed from %s redelivering %d from seq %d, incomplete %v",
					second, first.ID, len(want), want[0], n > redeliveryLimit)
			}
			notes := <-got
			var gotSeqs []uint64
			for _, note := range notes {
				gotSeqs = append(gotSeqs, note.Seq)
				if !note.Redelivered {
					t.Fatalf("notification %+v after the resume; want redelivered", note)
				}
			}
			if !slices.Equal(gotSeqs, want) {
				t.Fatalf("after the resume: %d notifications (%v ... %v); want the %d from seq %d to %d, in order, once",
					len(gotSeqs), gotSeqs[:min(3, len(gotSeqs))], gotSeqs[max(0, len(gotSeqs)-3):], len(want), want[0], want[len(want)-1])
			}
		})
	}
}
