package client_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/testports"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

const (
	tConnected    = eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED
	tReconnected  = eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED
	tDisconnected = eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED
	tRejected     = eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED
	tKick         = eventpb.EventType_EVENT_TYPE_KICK_REQUESTED
)

// fast is a backoff for tests: reconnects within milliseconds.
var fast = client.WithBackoff(client.Backoff{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond})

// recorder collects what the client reports.
type recorder struct {
	mu       sync.Mutex
	discs    []client.Disconnect
	sessions []client.Session
	frames   []string
	connects chan client.Session
}

func newRecorder() *recorder { return &recorder{connects: make(chan client.Session, 16)} }

func (r *recorder) options() []client.Option {
	return []client.Option{
		client.OnDisconnect(func(d client.Disconnect) { r.mu.Lock(); r.discs = append(r.discs, d); r.mu.Unlock() }),
		client.OnConnect(func(s client.Session) {
			r.mu.Lock()
			r.sessions = append(r.sessions, s)
			r.mu.Unlock()
			r.connects <- s
		}),
	}
}

func (r *recorder) disconnects() []client.Disconnect {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Disconnect(nil), r.discs...)
}

func dial(t *testing.T, h *testHub, user, device string, opts ...client.Option) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, h.addr, append([]client.Option{client.WithUser(user, device)}, opts...)...)
	if err != nil {
		t.Fatalf("dial %s/%s: %v", user, device, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sleepUntil makes every reconnect wait until gate is closed, so the test
// decides when the client comes back.
func sleepUntil(gate <-chan struct{}) client.Option {
	return client.WithSleep(func(ctx context.Context, d time.Duration) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func waitConnect(t *testing.T, r *recorder) client.Session {
	t.Helper()
	select {
	case s := <-r.connects:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no (re)connect within 10s")
	}
	return client.Session{}
}

func waitDone(t *testing.T, c *client.Client) *client.Disconnect {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("client did not end within 10s")
	}
	var d *client.Disconnect
	if err := c.Err(); !errors.As(err, &d) {
		t.Fatalf("Err() = %v; want a *Disconnect", err)
	}
	return d
}

func nextNote(t *testing.T, c *client.Client) client.Notification {
	t.Helper()
	select {
	case n, ok := <-c.Notifications():
		if !ok {
			t.Fatal("notifications closed")
		}
		return n
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
	}
	return client.Notification{}
}

func mustNotify(t *testing.T, h *testHub, user, topic string) uint64 {
	t.Helper()
	rep, err := h.notify(user, topic, "")
	if err != nil {
		t.Fatal(err)
	}
	return rep.GetSeq()
}

// mustNotifyEach notifies user once per topic, in order, and returns the
// notifications' seqs.
func mustNotifyEach(t *testing.T, h *testHub, user string, topics ...string) []uint64 {
	t.Helper()
	seqs := make([]uint64, len(topics))
	for i, topic := range topics {
		seqs[i] = mustNotify(t, h, user, topic)
	}
	return seqs
}

func mustKick(t *testing.T, h *testHub, req *hubpb.KickRequest) *hubpb.ActionReply {
	t.Helper()
	if req.Reason == "" {
		req.Reason = "test kick"
	}
	rep, err := h.kick(req)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestNotifyAckClose(t *testing.T) {
	h := newHub(t, hub.Config{})
	c := dial(t, h, "alice", "phone")
	seqs := mustNotifyEach(t, h, "alice", "a", "b", "c")
	for i, want := range seqs {
		n := nextNote(t, c)
		if n.Seq != want || n.Redelivered || n.EventID == "" {
			t.Fatalf("notification %d = %+v; want seq %d, live", i, n, want)
		}
		c.Ack(n.Seq)
	}
	if r := c.Resume(); r.LastAckedSeq != seqs[2] || r.SessionID != c.Session().ID || r.Secret == "" {
		t.Fatalf("resume state = %+v; want last acked %d", r, seqs[2])
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("close took %s", time.Since(start))
	}
	if c.Err() != nil {
		t.Fatalf("Err after Close = %v; want nil", c.Err())
	}
	if _, ok := <-c.Notifications(); ok {
		t.Fatal("notifications channel still open after Close")
	}
	var last client.Disconnect
	for d := range c.Disconnects() {
		last = d
	}
	if last.Cause != client.CauseClosed || last.WillReconnect {
		t.Fatalf("last disconnect = %+v; want closed, no reconnect", last)
	}
	end := h.waitEvent(t, 1, "disconnected", endOf(c.Session().ID))
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatalf("recorded cause = %v; want client_closed (Goodbye)", end.Event.GetSessionDisconnected().GetCause())
	}
}

// TestResumeElsewhereRedeliversWhatWasNotAcked: Resume names the last
// notification handed over (seq and event id) and the last ack. A client
// started with it, as after a process restart, gets the notifications
// after the ack again instead of dropping them as seen, and the server,
// finding the one named as seen in its log, does not call the log
// rewound.
func TestResumeElsewhereRedeliversWhatWasNotAcked(t *testing.T) {
	h := newHub(t, hub.Config{})
	c := dial(t, h, "nia", "d")
	seqs := mustNotifyEach(t, h, "nia", "a", "b", "c")
	var last client.Notification
	for _, want := range seqs {
		if last = nextNote(t, c); last.Seq != want || last.EventID == "" {
			t.Fatalf("got notification %+v; want seq %d with its event id", last, want)
		}
	}
	c.Ack(seqs[0])
	// A notification counts as handed over once the channel took it, a
	// moment after the application could read it.
	waitResume := func(c *client.Client) client.Resume {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := c.Resume()
			if r.LastSeenSeq == seqs[2] {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("got Resume %+v; want last seen seq %d", r, seqs[2])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	r := waitResume(c)
	if r.LastSeenEventID != last.EventID || r.LastAckedSeq != seqs[0] || r.SessionID != c.Session().ID {
		t.Fatalf("got Resume %+v; want session %s, last seen %s, last acked %d", r, c.Session().ID, last.EventID, seqs[0])
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := dial(t, h, "nia", "d", client.WithResume(r))
	if s := c2.Session(); s.ResumedFrom != r.SessionID || s.Redelivering != 2 || s.LogRewound {
		t.Fatalf("got session %+v; want resumed from %s, 2 redelivered, log not rewound", s, r.SessionID)
	}
	for _, want := range seqs[1:] {
		if n := nextNote(t, c2); n.Seq != want || !n.Redelivered {
			t.Fatalf("got %+v; want seq %d redelivered", n, want)
		}
	}
	if r2 := waitResume(c2); r2.LastSeenEventID != last.EventID {
		t.Fatalf("got Resume %+v; want last seen %s", r2, last.EventID)
	}
	// Counted before recorded as the last one seen.
	if st := c2.Stats(); st.Delivered != 2 || st.Redelivered != 2 || st.Duplicates != 0 {
		t.Fatalf("got stats %+v; want 2 delivered, both redelivered, no duplicate", st)
	}
}

func TestReconnectAllowedResumes(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	var frames []string
	var fmu sync.Mutex
	onFrame := client.OnFrame(func(f *hubpb.ServerFrame) {
		fmu.Lock()
		defer fmu.Unlock()
		switch {
		case f.GetWelcome() != nil:
			frames = append(frames, "welcome")
		case f.GetDisconnect() != nil:
			frames = append(frames, "disconnect")
		}
	})
	c := dial(t, h, "bob", "laptop", append(r.options(), fast, onFrame)...)
	first := waitConnect(t, r)
	rep := mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID, Reason: "rebalance"})
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID || second.ID == first.ID {
		t.Fatalf("second session %+v; want a new session resuming %s", second, first.ID)
	}
	d := r.disconnects()[0]
	if d.Cause != client.CauseKicked || !d.FromFrame || d.EventID != rep.GetEventId() || d.Reason != "rebalance" || d.Actor != "ops" ||
		d.Reconnect != client.ReconnectAllowed || !d.WillReconnect || d.Session != first.ID {
		t.Fatalf("disconnect = %+v; want kicked by ops (frame, event %s), reconnecting", d, rep.GetEventId())
	}
	rec := h.waitEvent(t, rep.GetSeq(), "session_reconnected", isType(tReconnected))
	if rec.Event.GetSession() != second.ID || rec.Event.GetSessionReconnected().GetPreviousSession() != first.ID {
		t.Fatalf("session_reconnected = %v; want %s after %s", rec.Event, second.ID, first.ID)
	}
	if n := h.count(t, 1, tRejected); n != 0 {
		t.Fatalf("%d connect_rejected events; want none", n)
	}
	fmu.Lock()
	got := frames
	fmu.Unlock()
	if len(got) != 3 || got[0] != "welcome" || got[1] != "disconnect" || got[2] != "welcome" {
		t.Fatalf("frames seen = %v; want welcome, disconnect, welcome", got)
	}
	if s := c.Stats(); s.Connects != 2 || s.Resumes != 1 {
		t.Fatalf("stats = %+v; want 2 connects, 1 resume", s)
	}
}

func TestNoReconnectAfterNotAllowed(t *testing.T) {
	h := newHub(t, hub.Config{})
	c := dial(t, h, "carl", "d", fast)
	rep := mustKick(t, h, &hubpb.KickRequest{User: "carl", Reason: "rights revoked", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	d := waitDone(t, c)
	if d.Cause != client.CauseKicked || d.Reconnect != client.ReconnectNotAllowed || d.WillReconnect || d.EventID != rep.GetEventId() {
		t.Fatalf("end = %+v; want kicked, not allowed, no reconnect", d)
	}
	// With a 5ms backoff, a wrong reconnect would show within this wait.
	time.Sleep(300 * time.Millisecond)
	if n := h.count(t, rep.GetSeq(), tConnected) + h.count(t, rep.GetSeq(), tReconnected) + h.count(t, rep.GetSeq(), tRejected); n != 0 {
		t.Fatalf("%d connect attempts recorded after a not_allowed kick; want none", n)
	}
}

func TestReconnectAfterWaitsAtLeastAfter(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	var mu sync.Mutex
	var delays []time.Duration
	sleep := client.WithSleep(func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	// No jitter: the client comes back exactly when it was told it may.
	dial(t, h, "dana", "d", append(r.options(), sleep, client.WithRand(func() float64 { return 0 }))...)
	first := waitConnect(t, r)
	const after = 300 * time.Millisecond
	rep := mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID, ReconnectAfterMs: after.Milliseconds()})
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID {
		t.Fatalf("resumed from %q; want %q", second.ResumedFrom, first.ID)
	}
	mu.Lock()
	got := append([]time.Duration(nil), delays...)
	mu.Unlock()
	if len(got) != 1 || got[0] < after {
		t.Fatalf("waits = %v; want one of at least %s", got, after)
	}
	kick := h.events(t, rep.GetSeq())[0]
	rec := h.waitEvent(t, rep.GetSeq(), "session_reconnected", isType(tReconnected))
	if kick.Event.GetType() != tKick || rec.Time.Sub(kick.Time) < after {
		t.Fatalf("reconnected %s after the kick; want at least %s", rec.Time.Sub(kick.Time), after)
	}
	if n := h.count(t, 1, tRejected); n != 0 {
		t.Fatalf("%d connect_rejected events; want none (the client waited as told)", n)
	}
}

func TestRedeliveryAcrossKickInOrderWithoutDuplicates(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	gate := make(chan struct{})
	// The reconnect waits for the test, so notifications are recorded
	// while the client is away.
	sleep := sleepUntil(gate)
	c := dial(t, h, "erin", "d", append(r.options(), sleep)...)
	first := waitConnect(t, r)
	seqs := mustNotifyEach(t, h, "erin", "1", "2", "3")
	for _, want := range seqs {
		if n := nextNote(t, c); n.Seq != want {
			t.Fatalf("live seq %d; want %d", n.Seq, want)
		}
	}
	c.Ack(seqs[1]) // 3 was delivered but not acknowledged
	mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID})
	h.waitEvent(t, seqs[2], "disconnected", endOf(first.ID))
	missed := mustNotifyEach(t, h, "erin", "4", "5", "6")
	close(gate)
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID || second.Redelivering != 4 || second.OldestRedelivered != seqs[2] || second.RedeliveryIncomplete {
		t.Fatalf("session %+v; want resumed from %s with 4 complete redeliveries from seq %d (3..6)", second, first.ID, seqs[2])
	}
	for _, want := range missed {
		if n := nextNote(t, c); n.Seq != want || !n.Redelivered {
			t.Fatalf("after resume: %+v; want seq %d redelivered", n, want)
		}
	}
	live := mustNotify(t, h, "erin", "7")
	if n := nextNote(t, c); n.Seq != live || n.Redelivered {
		t.Fatalf("after redelivery: %+v; want live seq %d", n, live)
	}
	if s := c.Stats(); s.Duplicates != 1 || s.Delivered != 7 || s.Redelivered != 3 {
		t.Fatalf("stats = %+v; want 7 delivered, 3 redelivered, 1 duplicate (seq 3) dropped", s)
	}
	rec := h.waitEvent(t, 1, "session_reconnected", isType(tReconnected))
	if got := rec.Event.GetSessionReconnected().GetLastAckedSeq(); got != seqs[1] {
		t.Fatalf("resumed after seq %d; want the last acked, %d", got, seqs[1])
	}
}

// TestRedeliveryPastTheLimitSaysIncomplete: more missed notifications than
// the server redelivers are reported on the Session, so the application
// knows to resync.
func TestRedeliveryPastTheLimitSaysIncomplete(t *testing.T) {
	h := newHub(t, hub.Config{RedeliveryLimit: 2})
	r := newRecorder()
	gate := make(chan struct{})
	sleep := sleepUntil(gate)
	dial(t, h, "fay", "d", append(r.options(), sleep)...)
	first := waitConnect(t, r)
	kick := mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID})
	h.waitEvent(t, kick.GetSeq(), "disconnected", endOf(first.ID))
	missed := mustNotifyEach(t, h, "fay", "1", "2", "3", "4")
	close(gate)
	second := waitConnect(t, r)
	if second.Redelivering != 2 || second.OldestRedelivered != missed[2] || !second.RedeliveryIncomplete {
		t.Fatalf("session %+v; want the newest 2 redelivered from seq %d, incomplete", second, missed[2])
	}
}

func TestAbortKickIsLostThenResumes(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	dial(t, h, "fay", "d", append(r.options(), fast)...)
	first := waitConnect(t, r)
	rep := mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID, Mode: hubpb.KickMode_KICK_MODE_ABORT})
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID {
		t.Fatalf("resumed from %q; want %q", second.ResumedFrom, first.ID)
	}
	d := r.disconnects()[0]
	if d.Cause != client.CauseLost || d.FromFrame || !d.WillReconnect {
		t.Fatalf("disconnect = %+v; want lost (no frame in abort mode), reconnecting", d)
	}
	end := h.waitEvent(t, rep.GetSeq(), "disconnected", endOf(first.ID))
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED {
		t.Fatalf("recorded cause %v; want kicked", end.Event.GetSessionDisconnected().GetCause())
	}
}

func TestAbortKickNotAllowedRefusesResume(t *testing.T) {
	h := newHub(t, hub.Config{})
	c := dial(t, h, "gus", "d", fast)
	rep := mustKick(t, h, &hubpb.KickRequest{User: "gus", Mode: hubpb.KickMode_KICK_MODE_ABORT, Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	// The client cannot know the advice (no frame): it comes back, and the
	// server refuses the resume, which ends the client.
	d := waitDone(t, c)
	if d.Cause != client.CauseRejected || d.RejectCode != "resume_refused" || d.Reconnect != client.ReconnectNotAllowed || d.WillReconnect {
		t.Fatalf("end = %+v; want the resume refused, not allowed", d)
	}
	rj := h.waitEvent(t, rep.GetSeq(), "connect_rejected", isType(tRejected))
	if rj.Event.GetUser() != "gus" || rj.Event.GetConnectRejected().GetCode() != "resume_refused" {
		t.Fatalf("connect_rejected = %v", rj.Event)
	}
	time.Sleep(200 * time.Millisecond)
	if n := h.count(t, rep.GetSeq(), tRejected) + h.count(t, rep.GetSeq(), tReconnected) + h.count(t, rep.GetSeq(), tConnected); n != 1 {
		t.Fatalf("%d connect events after the kick; want exactly the one refusal", n)
	}
}

func TestBanEndsClient(t *testing.T) {
	h := newHub(t, hub.Config{})
	forever := dial(t, h, "hal", "d", fast)
	timed := dial(t, h, "ida", "d", fast, client.WithMaxWait(time.Minute))
	for _, req := range []*hubpb.BanRequest{{User: "hal", Reason: "fraud"}, {User: "ida", Reason: "cool off", DurationMs: time.Hour.Milliseconds()}} {
		if _, err := h.ban(req); err != nil {
			t.Fatal(err)
		}
	}
	if d := waitDone(t, forever); d.Cause != client.CauseBanned || d.Reason != "fraud" || d.Reconnect != client.ReconnectNotAllowed {
		t.Fatalf("ban without expiry: %+v; want banned, not allowed", d)
	}
	// A ban of an hour is "reconnect after 1h"; past WithMaxWait the
	// client gives up instead of waiting.
	if d := waitDone(t, timed); d.Cause != client.CauseBanned || d.Reconnect != client.ReconnectAfter || d.ReconnectAfter < 59*time.Minute || d.WillReconnect {
		t.Fatalf("ban for 1h: %+v; want banned, after ~1h, no reconnect", d)
	}
	head := h.store.Head().Seq
	_, err := client.Dial(context.Background(), h.addr, client.WithUser("hal", "d"))
	var d *client.Disconnect
	if !errors.As(err, &d) || d.Cause != client.CauseRejected || d.RejectCode != "banned" || d.Reason != "fraud" {
		t.Fatalf("dial while banned: %v; want rejected banned", err)
	}
	rj := h.waitEvent(t, head+1, "connect_rejected", isType(tRejected))
	if rj.Event.GetUser() != "hal" || rj.Event.GetConnectRejected().GetCode() != "banned" {
		t.Fatalf("connect_rejected = %v", rj.Event)
	}
}

func TestSupersededDoesNotReconnect(t *testing.T) {
	h := newHub(t, hub.Config{Policy: projections.Policy{OnePerDevice: true}})
	old := dial(t, h, "jo", "phone", fast)
	nw := dial(t, h, "jo", "phone", fast)
	d := waitDone(t, old)
	if d.Cause != client.CauseSuperseded || d.SupersededBy != nw.Session().ID || d.WillReconnect {
		t.Fatalf("old end = %+v; want superseded by %s, no reconnect", d, nw.Session().ID)
	}
	// Coming back would throw the new login out: nothing may be attempted.
	from := h.store.Head().Seq
	time.Sleep(200 * time.Millisecond)
	if got := h.events(t, from+1); len(got) != 0 {
		t.Fatalf("%d events after the supersede; want none", len(got))
	}
	select {
	case <-nw.Done():
		t.Fatalf("the new session ended: %v", nw.Err())
	default:
	}
}

func TestServerShutdownResumesAfterRestart(t *testing.T) {
	h := newHub(t, hub.Config{ShutdownReconnect: 150 * time.Millisecond})
	r := newRecorder()
	c := dial(t, h, "kai", "d", append(r.options(), fast)...)
	first := waitConnect(t, r)
	h.restart(t)
	second := waitConnect(t, r)
	if second.ResumedFrom != first.ID {
		t.Fatalf("resumed from %q; want %q", second.ResumedFrom, first.ID)
	}
	d := r.disconnects()[0]
	if d.Cause != client.CauseServerShutdown || d.Reconnect != client.ReconnectAfter || d.ReconnectAfter < 150*time.Millisecond || d.Delay < d.ReconnectAfter {
		t.Fatalf("disconnect = %+v; want server_shutdown, waiting at least the advice", d)
	}
	n := mustNotify(t, h, "kai", "after-restart")
	if got := nextNote(t, c); got.Seq != n {
		t.Fatalf("notification seq %d; want %d", got.Seq, n)
	}
}

func TestBackoffWhileServerDown(t *testing.T) {
	h := newHub(t, hub.Config{ShutdownReconnect: 50 * time.Millisecond})
	var mu sync.Mutex
	var delays []time.Duration
	b := client.Backoff{Base: 100 * time.Millisecond, Max: 250 * time.Millisecond, Jitter: 0.5}
	r := newRecorder()
	c := dial(t, h, "lee", "d", append(r.options(), client.WithBackoff(b), client.WithMaxAttempts(3), client.WithRand(func() float64 { return 0.5 }),
		client.WithSleep(func(ctx context.Context, d time.Duration) error {
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
			return ctx.Err() // no real wait: the schedule is what is checked
		}))...)
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	d := waitDone(t, c)
	if d.Cause != client.CauseLost || d.Attempt != 3 || d.WillReconnect {
		t.Fatalf("end = %+v; want lost after 3 failed attempts", d)
	}
	// Attempt counts the failed attempts, the reported one included: 0
	// for the end of the session, then 1, 2, 3.
	var attempts []int
	for _, d := range r.disconnects() {
		attempts = append(attempts, d.Attempt)
	}
	if !slices.Equal(attempts, []int{0, 1, 2, 3}) {
		t.Fatalf("attempts = %v; want [0 1 2 3]", attempts)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delays) != 3 || delays[0] < 50*time.Millisecond || delays[1] != b.Delay(1, 0.5) || delays[2] != b.Delay(2, 0.5) {
		t.Fatalf("waits = %v; want [≥50ms (the shutdown advice), %s, %s]", delays, b.Delay(1, 0.5), b.Delay(2, 0.5))
	}
}

func TestResumeRefusedConnectsAfresh(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	c := dial(t, h, "max", "d", append(r.options(), client.WithResume(client.Resume{SessionID: "01JUNKJUNKJUNKJUNKJUNKJUNK", Secret: "wrong"}))...)
	// The refusal's OnDisconnect runs before the fresh session's OnConnect.
	if s := waitConnect(t, r); s.ResumedFrom != "" || !s.RedeliveryIncomplete || s != c.Session() {
		t.Fatalf("session %+v; want a fresh one, its redelivery incomplete (the saved session's gap is lost)", s)
	}
	ds := r.disconnects()
	if len(ds) != 1 || ds[0].Cause != client.CauseRejected || ds[0].RejectCode != "resume_refused" || !ds[0].WillReconnect || ds[0].Delay != 0 || ds[0].Attempt != 1 {
		t.Fatalf("disconnects = %+v; want the refused resume reported as attempt 1, connecting afresh at once", ds)
	}
	got := h.events(t, 1)
	if len(got) != 2 || got[0].Event.GetType() != tRejected || got[1].Event.GetType() != tConnected {
		t.Fatalf("ledger has %d events; want connect_rejected then session_connected", len(got))
	}
}

// TestResumeWindowPassedConnectsAfresh: a reconnect after the resume
// window is refused; the client connects afresh and says the
// notifications recorded meanwhile are lost to it.
func TestResumeWindowPassedConnectsAfresh(t *testing.T) {
	h := newHub(t, hub.Config{ResumeWindow: 200 * time.Millisecond})
	r := newRecorder()
	gate := make(chan struct{})
	c := dial(t, h, "nia", "d", append(r.options(), sleepUntil(gate))...)
	first := waitConnect(t, r)
	if first.RedeliveryIncomplete {
		t.Fatalf("first session %+v; want nothing incomplete", first)
	}
	kick := mustKick(t, h, &hubpb.KickRequest{SessionId: first.ID})
	h.waitEvent(t, kick.GetSeq(), "disconnected", endOf(first.ID))
	missed := mustNotify(t, h, "nia", "missed")
	time.Sleep(400 * time.Millisecond) // past the resume window
	close(gate)
	second := waitConnect(t, r)
	if second.ResumedFrom != "" || !second.RedeliveryIncomplete || second.Redelivering != 0 || c.Session() != second {
		t.Fatalf("second session %+v; want a fresh one with RedeliveryIncomplete", second)
	}
	ds := r.disconnects()
	if len(ds) != 2 || ds[0].Cause != client.CauseKicked || ds[1].RejectCode != "resume_refused" || !ds[1].WillReconnect || ds[1].Attempt != 1 {
		t.Fatalf("disconnects = %+v; want the kick, then the refused resume", ds)
	}
	live := mustNotify(t, h, "nia", "live")
	if n := nextNote(t, c); n.Seq != live {
		t.Fatalf("notification %+v; want the live one, %d (%d was recorded between the sessions)", n, live, missed)
	}
}

func TestPongsKeepSessionAlive(t *testing.T) {
	h := newHub(t, hub.Config{HeartbeatInterval: 30 * time.Millisecond, IdleTimeout: 100 * time.Millisecond})
	var mu sync.Mutex
	pings := 0
	c := dial(t, h, "ned", "d", client.OnFrame(func(f *hubpb.ServerFrame) {
		if f.GetPing() != nil {
			mu.Lock()
			pings++
			mu.Unlock()
		}
	}))
	time.Sleep(400 * time.Millisecond)
	if s := c.Stats(); s.Connects != 1 {
		t.Fatalf("connects = %d; want the first session to have lasted", s.Connects)
	}
	mu.Lock()
	defer mu.Unlock()
	if pings < 5 {
		t.Fatalf("%d pings in 400ms; want at least 5", pings)
	}
	if n := h.count(t, 1, tDisconnected); n != 0 {
		t.Fatalf("%d sessions ended; want none (pongs answered)", n)
	}
}

func TestCloseWhileWaitingToReconnect(t *testing.T) {
	h := newHub(t, hub.Config{})
	c := dial(t, h, "oli", "d")
	mustKick(t, h, &hubpb.KickRequest{User: "oli", ReconnectAfterMs: time.Minute.Milliseconds()})
	if d := <-c.Disconnects(); !d.WillReconnect || d.Delay < time.Minute {
		t.Fatalf("disconnect = %+v; want a wait of a minute", d)
	}
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second || c.Err() != nil {
		t.Fatalf("close took %s, Err %v; want prompt and nil", time.Since(start), c.Err())
	}
}

func TestBackoffSchedule(t *testing.T) {
	b := client.Backoff{Base: 100 * time.Millisecond, Max: time.Second, Jitter: 0.5}
	for n, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		if lo, hi := b.Delay(n, 0), b.Delay(n, 0.999999); lo != want/2 || hi > want || hi < want*99/100 {
			t.Fatalf("attempt %d: delays [%s, %s]; want [%s, %s]", n, lo, hi, want/2, want)
		}
	}
	// "After a": at least a, plus up to a fifth of it at random.
	if lo, hi := b.After(3*time.Second, 0, 0), b.After(3*time.Second, 0, 0.999999); lo != 3*time.Second || hi < 3590*time.Millisecond || hi > 3600*time.Millisecond {
		t.Fatalf("after 3s: [%s, %s]; want [3s, 3.6s]", lo, hi)
	}
	// An advice shorter than the backoff at attempt n waits the backoff.
	if d := b.After(10*time.Millisecond, 3, 0); d != b.Delay(3, 0) {
		t.Fatalf("after 10ms at attempt 3: %s; want the backoff, %s", d, b.Delay(3, 0))
	}
	if d := (client.Backoff{Jitter: -1}).After(time.Second, 0, 0.9); d != time.Second {
		t.Fatalf("after 1s without jitter: %s; want 1s", d)
	}
	if d := (client.Backoff{Base: time.Second, Jitter: -1}).Delay(0, 0.7); d != time.Second {
		t.Fatalf("no jitter: %s; want 1s", d)
	}
}

// TestBackoffGrowsWhenSessionsDoNotLast: a session that is welcomed and
// kicked at once does not restart the backoff (it would come back every
// Base forever); one that lasted Backoff.Max does.
func TestBackoffGrowsWhenSessionsDoNotLast(t *testing.T) {
	h := newHub(t, hub.Config{})
	r := newRecorder()
	// Max is well above how long a kick takes even on a loaded machine.
	b := client.Backoff{Base: 10 * time.Millisecond, Max: time.Second, Jitter: -1}
	var mu sync.Mutex
	var delays []time.Duration
	c := dial(t, h, "pat", "d", append(r.options(), client.WithBackoff(b), client.WithSleep(func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		delays = append(delays, d)
		mu.Unlock()
		return ctx.Err() // come back at once: the schedule is what is checked
	}))...)
	s := waitConnect(t, r)
	for range 5 {
		mustKick(t, h, &hubpb.KickRequest{SessionId: s.ID})
		s = waitConnect(t, r)
	}
	time.Sleep(b.Max + 50*time.Millisecond) // this session lasts
	mustKick(t, h, &hubpb.KickRequest{SessionId: s.ID})
	waitConnect(t, r)
	mu.Lock()
	got := slices.Clone(delays)
	mu.Unlock()
	ms := time.Millisecond
	if want := []time.Duration{10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 10 * ms}; !slices.Equal(got, want) {
		t.Fatalf("waits = %v; want %v (growing while sessions end at once, back to Base after one lasted)", got, want)
	}
	for _, d := range r.disconnects() {
		if d.Attempt != 0 || d.Cause != client.CauseKicked {
			t.Fatalf("disconnect %+v; want kicked, attempt 0 (no connect failed)", d)
		}
	}
	if s := c.Stats(); s.Connects != 7 || s.Resumes != 6 {
		t.Fatalf("stats = %+v; want 7 connects, 6 resumes", s)
	}
}

// TestSeveralAddressesMoveOn: a client given several addresses starts at
// the first it can reach (the first is a closed port) and, when its node
// shuts down, moves to the next one instead of waiting for its node.
func TestSeveralAddressesMoveOn(t *testing.T) {
	dead := testports.Addr(t) // refuses, and stays so
	h1 := newHub(t, hub.Config{ShutdownReconnect: 50 * time.Millisecond})
	h2 := newHub(t, hub.Config{})
	r := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, dead+", "+h1.addr+","+h2.addr, append(r.options(), client.WithUser("mo", "d"), fast)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	first := waitConnect(t, r)
	if first.Addr != h1.addr {
		t.Fatalf("first session on %q; want the first reachable node %q", first.Addr, h1.addr)
	}
	if err := h1.stop(); err != nil {
		t.Fatal(err)
	}
	second := waitConnect(t, r)
	if second.Addr != h2.addr {
		t.Fatalf("after its node shut down the client is on %q; want the next node %q", second.Addr, h2.addr)
	}
	n := mustNotify(t, h2, "mo", "on the next node")
	if got := nextNote(t, c); got.Seq != n {
		t.Fatalf("notification seq %d; want %d", got.Seq, n)
	}
}
