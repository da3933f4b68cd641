package hub_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

const (
	tConnected    = eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED
	tReconnected  = eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED
	tNotification = eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT
	tKick         = eventpb.EventType_EVENT_TYPE_KICK_REQUESTED
	tBanned       = eventpb.EventType_EVENT_TYPE_USER_BANNED
	tUnbanned     = eventpb.EventType_EVENT_TYPE_USER_UNBANNED
	tDisconnected = eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED
	tRejected     = eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED
)

func TestConnectNotifyAckClose(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	c := e.mustDial("alice", "phone")
	if c.welcome.GetSessionId() == "" || c.welcome.GetResumeSecret() == "" || c.welcome.GetHeartbeatIntervalMs() != 10000 {
		t.Fatalf("welcome = %v", c.welcome)
	}
	rep, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "alice", Topic: "news", Payload: []byte(`{"hi":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != 1 {
		t.Fatalf("notify reached %d sessions; want 1", rep.GetSessions())
	}
	f, err := c.next()
	if err != nil {
		t.Fatal(err)
	}
	n := f.GetNotification()
	if n == nil || n.GetSeq() != rep.GetSeq() || n.GetTopic() != "news" || !bytes.Equal(n.GetPayload(), []byte(`{"hi":1}`)) || n.GetEventId() != rep.GetEventId() {
		t.Fatalf("notification = %v; want seq %d topic news", f, rep.GetSeq())
	}
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: n.GetSeq()}}}); err != nil {
		t.Fatal(err)
	}
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: "bye"}}}); err != nil {
		t.Fatal(err)
	}
	if d, st := c.expectEnd(); d != nil || st.Code() != codes.OK {
		t.Fatalf("end after goodbye: disconnect %v status %v; want a clean end", d, st)
	}
	end := e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatalf("cause = %v; want client_closed", end.Event.GetSessionDisconnected().GetCause())
	}
	if got := e.types(1); !equalTypes(got, tConnected, tNotification, tDisconnected) {
		t.Fatalf("ledger = %v; want connected, notification_sent, disconnected", got)
	}
	first := e.events(1)[0].Event
	if first.GetUser() != "alice" || first.GetDevice() != "phone" || first.GetSession() != c.welcome.GetSessionId() || first.GetNode() != "node-1" {
		t.Fatalf("connected event = %v", first)
	}
}

func TestKickGraceful(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	c := e.mustDial("bob", "laptop")
	other := e.mustDial("carol", "laptop")
	rep, err := e.admin.Kick(adminCtx(ctx), &hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reason: "spamming the lobby",
		Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != 1 || rep.GetEventId() == "" {
		t.Fatalf("kick reply = %v; want 1 session and an event id", rep)
	}
	d, st := c.expectEnd()
	if d == nil || d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetReason() != "spamming the lobby" ||
		d.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED || d.GetEventId() != rep.GetEventId() || d.GetActor() != "ops-alice" {
		t.Fatalf("disconnect frame = %v; want kicked by ops-alice with the kick's event id", d)
	}
	if st.Code() != codes.Aborted || len(st.Details()) != 1 {
		t.Fatalf("status = %v; want Aborted with the Disconnect as detail", st)
	}
	if det, ok := st.Details()[0].(*hubpb.Disconnect); !ok || det.GetEventId() != rep.GetEventId() {
		t.Fatalf("status detail = %v; want the same Disconnect", st.Details()[0])
	}
	end := e.waitEnd(1, c.welcome.GetSessionId())
	kick := e.events(rep.GetSeq())[0]
	if kick.Event.GetType() != tKick || kick.Event.GetActor() != "ops-alice" || kick.Event.GetReason() != "spamming the lobby" || kick.Event.GetUser() != "bob" {
		t.Fatalf("kick event = %v", kick.Event)
	}
	dd := end.Event.GetSessionDisconnected()
	if dd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || !bytes.Equal(dd.GetCauseEventId(), kick.ID[:]) ||
		dd.GetReconnect() != eventpb.Reconnect_RECONNECT_NOT_ALLOWED || end.Seq <= kick.Seq {
		t.Fatalf("disconnected event = %v (seq %d); want kicked by %s after seq %d", dd, end.Seq, kick.ID, kick.Seq)
	}
	if got := e.types(1); !equalTypes(got, tConnected, tConnected, tKick, tDisconnected) {
		t.Fatalf("ledger = %v", got)
	}
	// The other session is untouched.
	if _, err := e.admin.GetSession(adminCtx(ctx), &hubpb.GetSessionRequest{SessionId: other.welcome.GetSessionId()}); err != nil {
		t.Fatalf("other session: %v", err)
	}
	if _, err := e.admin.GetSession(adminCtx(ctx), &hubpb.GetSessionRequest{SessionId: c.welcome.GetSessionId()}); status.Code(err) != codes.NotFound {
		t.Fatalf("kicked session: %v; want NotFound", err)
	}
}

func TestKickAbortClosesTransport(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	c := e.mustDial("dave", "tv")
	rep, err := e.admin.Kick(adminCtx(ctx), &hubpb.KickRequest{User: "dave", Reason: "rights revoked", Mode: hubpb.KickMode_KICK_MODE_ABORT})
	if err != nil {
		t.Fatal(err)
	}
	d, st := c.expectEnd()
	if d != nil {
		t.Fatalf("abort mode sent a Disconnect frame %v; want the transport closed", d)
	}
	if st.Code() != codes.Unavailable && st.Code() != codes.Internal {
		t.Fatalf("status = %v; want a transport error", st)
	}
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	// Abort is still recorded, with the kick as its cause.
	id := c.welcome.GetSessionId()
	e.expectLedger(1,
		"session_connected dave/tv "+id,
		"kick_requested dave by ops-alice: rights revoked",
		"session_disconnected dave/tv "+id+" kicked "+rep.GetEventId()+" by ops-alice: rights revoked")
}

func rejected(t *testing.T, err error) (*status.Status, *hubpb.Rejected) {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if r, ok := d.(*hubpb.Rejected); ok {
			return st, r
		}
	}
	return st, nil
}

func TestBanWhileConnectedThenRefusedThenExpires(t *testing.T) {
	e := newEnv(t, hub.Config{RejectWindow: time.Hour})
	ctx := ctxT(t)
	c := e.mustDial("eve", "phone")
	rep, err := e.admin.Ban(adminCtx(ctx), &hubpb.BanRequest{User: "eve", DurationMs: 1500, Reason: "abuse report 42"})
	if err != nil {
		t.Fatal(err)
	}
	d, st := c.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_BANNED || d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || st.Code() != codes.PermissionDenied {
		t.Fatalf("ban end: %v %v; want banned, reconnect after, PermissionDenied", d, st)
	}
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	// Three attempts while banned: the first recorded at once, the other
	// two counted in one event at the end of the reject window.
	var rj *hubpb.Rejected
	for range 3 {
		_, err = e.dial("eve", "phone")
		st, rj = rejected(t, err)
		if st.Code() != codes.PermissionDenied || rj == nil || rj.GetCode() != "banned" || rj.GetReason() != "abuse report 42" || rj.GetUntilUnixNano() == 0 {
			t.Fatalf("connect while banned: %v %v; want PermissionDenied with the ban's reason and expiry", st, rj)
		}
	}
	// The ban lifts itself: no unban event needed.
	until := time.Unix(0, rj.GetUntilUnixNano())
	time.Sleep(time.Until(until) + 50*time.Millisecond)
	c2 := e.mustDial("eve", "phone")
	if err := e.srv.Shutdown(ctxT(t)); err != nil { // records the counted refusals
		t.Fatal(err)
	}
	id, id2 := c.welcome.GetSessionId(), c2.welcome.GetSessionId()
	e.expectLedger(1,
		"session_connected eve/phone "+id,
		"user_banned eve by ops-alice: abuse report 42",
		"session_disconnected eve/phone "+id+" banned "+rep.GetEventId()+" by ops-alice: abuse report 42",
		"connect_rejected eve/phone banned x1: abuse report 42",
		"session_connected eve/phone "+id2,
		"session_disconnected eve/phone "+id2+" server_shutdown by system: server shutting down",
		"connect_rejected eve/phone banned x2: abuse report 42")
}

func TestUnban(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	if _, err := e.admin.Unban(ctx, &hubpb.UnbanRequest{User: "frank", Reason: "appeal"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unban of a user not banned: %v; want FailedPrecondition", err)
	}
	if _, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "frank", Reason: "forever"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dial("frank", "d"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("connect while banned without expiry: %v", err)
	}
	if _, err := e.admin.Unban(ctx, &hubpb.UnbanRequest{User: "frank", Reason: "appeal granted"}); err != nil {
		t.Fatal(err)
	}
	e.mustDial("frank", "d")
	if got := e.types(1); !equalTypes(got, tBanned, tRejected, tUnbanned, tConnected) {
		t.Fatalf("ledger = %v", got)
	}
}

func TestSupersedeOnePerDevice(t *testing.T) {
	e := newEnv(t, hub.Config{Policy: projectionsPolicy(0, true)})
	old := e.mustDial("gina", "phone")
	laptop := e.mustDial("gina", "laptop")
	nw := e.mustDial("gina", "phone")
	d, st := old.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != nw.welcome.GetSessionId() || st.Code() != codes.Aborted {
		t.Fatalf("old session end: %v %v; want superseded by %s", d, st, nw.welcome.GetSessionId())
	}
	e.waitEnd(1, old.welcome.GetSessionId())
	// The connect event records the policy (the reducer decides what it
	// supersedes); the end names the new session and, as its cause, that
	// connect. The laptop is untouched.
	oldID, lapID, nwID := old.welcome.GetSessionId(), laptop.welcome.GetSessionId(), nw.welcome.GetSessionId()
	e.expectLedger(1,
		"session_connected gina/phone "+oldID+" policy one_per_device",
		"session_connected gina/laptop "+lapID+" policy one_per_device",
		"session_connected gina/phone "+nwID+" policy one_per_device",
		"session_disconnected gina/phone "+oldID+" superseded "+nw.welcome.GetEventId()+" superseded_by "+nwID+" by gina: superseded by session "+nwID)
	list, err := e.admin.ListSessions(adminCtx(ctxT(t)), &hubpb.ListSessionsRequest{User: "gina"})
	if err != nil || len(list.GetSessions()) != 2 {
		t.Fatalf("gina's sessions: %v %v; want laptop and the new phone", list, err)
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, hub.Config{HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c := e.mustDial("hank", "watch") // never answers pings
	d, st := c.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_IDLE_TIMEOUT || st.Code() != codes.DeadlineExceeded {
		t.Fatalf("idle end: %v %v", d, st)
	}
	e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	id := c.welcome.GetSessionId()
	e.expectLedger(1,
		"session_connected hank/watch "+id,
		"session_disconnected hank/watch "+id+" idle_timeout by system: no frame from the client for *")
}

// TestSupersedeMaxPerUser: with at most N sessions per user (any device),
// the N+1th login supersedes the oldest.
func TestSupersedeMaxPerUser(t *testing.T) {
	e := newEnv(t, hub.Config{Policy: projectionsPolicy(2, false)})
	first := e.mustDial("nora", "phone")
	second := e.mustDial("nora", "laptop")
	third := e.mustDial("nora", "tablet")
	if d, _ := first.expectEnd(); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != third.welcome.GetSessionId() {
		t.Fatalf("oldest session ended with %v; want superseded by %s", d, third.welcome.GetSessionId())
	}
	e.waitEnd(1, first.welcome.GetSessionId())
	a, b, c := first.welcome.GetSessionId(), second.welcome.GetSessionId(), third.welcome.GetSessionId()
	e.expectLedger(1,
		"session_connected nora/phone "+a+" policy max_per_user=2",
		"session_connected nora/laptop "+b+" policy max_per_user=2",
		"session_connected nora/tablet "+c+" policy max_per_user=2",
		"session_disconnected nora/phone "+a+" superseded "+third.welcome.GetEventId()+" superseded_by "+c+" by nora: superseded by session "+c)
	list, err := e.admin.ListSessions(adminCtx(ctxT(t)), &hubpb.ListSessionsRequest{User: "nora"})
	if err != nil || len(list.GetSessions()) != 2 {
		t.Fatalf("nora's sessions: %v %v; want 2", list, err)
	}
}

func TestPongKeepsSessionAlive(t *testing.T) {
	e := newEnv(t, hub.Config{HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	c := e.mustDial("ivy", "watch")
	deadline := time.Now().Add(600 * time.Millisecond)
	for time.Now().Before(deadline) {
		f, err := c.stream.Recv()
		if err != nil {
			t.Fatalf("session ended while answering pings: %v", err)
		}
		if p := f.GetPing(); p != nil {
			if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Pong{Pong: &hubpb.Pong{Nonce: p.GetNonce()}}}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestRestartEndsLostSessions(t *testing.T) {
	e := newEnv(t, hub.Config{})
	// A previous run of this node crashed with a session open: its connect
	// is in the log and nothing ended it.
	if _, err := e.store.Append(context.Background(), &eventpb.Event{Type: tConnected, User: "jack", Device: "d", Session: "crashed-1", Node: "node-1", Actor: "jack",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}); err != nil {
		t.Fatal(err)
	}
	// Another node's session is not ours to end.
	if _, err := e.store.Append(context.Background(), &eventpb.Event{Type: tConnected, User: "kim", Device: "d", Session: "other-node-1", Node: "node-2", Actor: "kim",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}); err != nil {
		t.Fatal(err)
	}
	e.restart()
	var lost []string
	for _, r := range e.events(1) {
		if r.Event.GetType() == tDisconnected {
			if r.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST {
				t.Fatalf("restart recorded cause %v", r.Event.GetSessionDisconnected().GetCause())
			}
			lost = append(lost, r.Event.GetSession())
		}
	}
	if len(lost) != 1 || lost[0] != "crashed-1" {
		t.Fatalf("ended as lost: %v; want [crashed-1]", lost)
	}
}

// TestUnheldSessionEnded: a connect the log holds for this node while the
// node holds no such session (in a cluster, a connect answered as refused
// whose publish the stream committed when its quorum came back) is ended
// by the node after OrphanAfter, with cause lost, once; the sessions it
// holds, and another node's, are left alone.
func TestUnheldSessionEnded(t *testing.T) {
	e := newEnv(t, hub.Config{OrphanAfter: 300 * time.Millisecond})
	held := e.mustDial("held", "d")
	for _, ev := range []*eventpb.Event{
		{Type: tConnected, User: "ghost", Device: "d", Session: "refused-1", Node: "node-1", Actor: "ghost",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}},
		{Type: tConnected, User: "kim", Device: "d", Session: "other-node-1", Node: "node-2", Actor: "kim",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}},
	} {
		if _, err := e.store.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		res, err := e.admin.ListSessions(adminCtx(ctx), &hubpb.ListSessionsRequest{User: "ghost"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetSessions()) == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the unheld session refused-1 is still live 10 s after it was recorded; want it ended after OrphanAfter (300ms)")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // more sweeps: none may end it again
	ends := map[string]int{}
	for _, r := range e.events(1) {
		if r.Event.GetType() != tDisconnected {
			continue
		}
		ends[r.Event.GetSession()]++
		if r.Event.GetSession() == "refused-1" && r.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST {
			t.Errorf("refused-1 ended with cause %v; want lost", r.Event.GetSessionDisconnected().GetCause())
		}
	}
	if len(ends) != 1 || ends["refused-1"] != 1 {
		t.Fatalf("ends recorded per session: %v; want refused-1's alone, once", ends)
	}
	res, err := e.admin.ListSessions(adminCtx(ctx), &hubpb.ListSessionsRequest{User: "held"})
	if err != nil || len(res.GetSessions()) != 1 || res.GetSessions()[0].GetSessionId() != held.welcome.GetSessionId() {
		t.Fatalf("held's live sessions: %v, %v; want its one session", res.GetSessions(), err)
	}
}

func TestShutdownTellsEverySessionAndRecordsIt(t *testing.T) {
	e := newEnv(t, hub.Config{})
	var cs []*client
	for _, u := range []string{"l1", "l2", "l3"} {
		cs = append(cs, e.mustDial(u, "d"))
	}
	head := e.store.Head().Seq
	done := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := e.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		close(done)
	}()
	for _, c := range cs {
		d, st := c.expectEnd()
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SERVER_SHUTDOWN || d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER ||
			d.GetReconnectAfterMs() < 1000 || st.Code() != codes.Unavailable {
			t.Fatalf("shutdown end: %v %v; want server_shutdown, reconnect after >= 1s, Unavailable", d, st)
		}
	}
	<-done
	if got := e.types(head + 1); !equalTypes(got, tDisconnected, tDisconnected, tDisconnected) {
		t.Fatalf("ledger after shutdown = %v; want three disconnects", got)
	}
	for _, r := range e.events(head + 1) {
		if r.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN {
			t.Fatalf("cause = %v", r.Event.GetSessionDisconnected().GetCause())
		}
	}
	if _, err := e.dial("late", "d"); status.Code(err) != codes.Unavailable {
		t.Fatalf("connect after shutdown: %v; want Unavailable", err)
	}
}

func TestAdminNeedsToken(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	c := e.mustDial("mia", "d")
	head := e.store.Head().Seq
	var msgs []string
	for _, md := range []metadata.MD{nil, metadata.Pairs("authorization", "Bearer wrong-token-wrong-token"), metadata.Pairs("authorization", adminToken)} {
		cctx := ctx
		if md != nil {
			cctx = metadata.NewOutgoingContext(ctx, md)
		}
		for _, target := range []string{c.welcome.GetSessionId(), "no-such-session"} {
			_, err := e.admin.Kick(cctx, &hubpb.KickRequest{SessionId: target, Reason: "x"})
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("kick with %v: %v; want Unauthenticated", md, err)
			}
			msgs = append(msgs, status.Convert(err).Message())
		}
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Fatalf("unauthenticated messages differ (%q vs %q): they must not hint whether a session exists", m, msgs[0])
		}
	}
	if _, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("list without token: %v", err)
	}
	if e.store.Head().Seq != head {
		t.Fatal("an unauthenticated call wrote to the ledger")
	}
}

func TestBadFirstFrames(t *testing.T) {
	e := newEnv(t, hub.Config{HelloTimeout: 200 * time.Millisecond})
	ctx := ctxT(t)
	open := func() hubpb.Hub_ConnectClient {
		s, err := hubpb.NewHubClient(e.conn).Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Not a Hello.
	s := open()
	_ = s.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: 1}}})
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "Hello") {
		t.Fatalf("ack as first frame: %v; want InvalidArgument naming Hello", err)
	}
	// No Hello at all.
	s = open()
	if _, err := s.Recv(); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("no hello: %v; want DeadlineExceeded", err)
	}
	// Closed before Hello.
	s = open()
	_ = s.CloseSend()
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("close before hello: %v; want InvalidArgument", err)
	}
	// Hello without a user.
	s = open()
	_ = s.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{Device: "d"}}})
	if _, err := s.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("hello without user: %v; want InvalidArgument", err)
	}
	// Oversized frame.
	s = open()
	_ = s.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: strings.Repeat("x", 100<<10)}}})
	if _, err := s.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("oversized hello: %v; want ResourceExhausted", err)
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("bad first frames wrote %d events; want none", h)
	}
	// Bad admin input is refused without a write.
	for _, req := range []*hubpb.KickRequest{{Reason: "no target"}, {SessionId: "s", User: "u", Reason: "two targets"}, {User: "u"}, {User: "u", Reason: "r", Mode: 9}} {
		if _, err := e.admin.Kick(adminCtx(ctx), req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("kick %v: %v; want InvalidArgument", req, err)
		}
	}
	if _, err := e.admin.Ban(adminCtx(ctx), &hubpb.BanRequest{User: "u", Reason: "r", UntilUnixNano: 1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("ban in the past: %v", err)
	}
	if _, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Topic: "t"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("notify without target: %v", err)
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("bad admin calls wrote %d events; want none", h)
	}
}

func TestLedgerFailureFailsClosed(t *testing.T) {
	var logs syncbuf.Buffer
	e := newEnv(t, hub.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := ctxT(t)
	e.mustDial("nina", "d")
	head := e.store.Head().Seq
	// The ledger goes away under the hub (disk gone, closed): nothing may
	// take effect unrecorded.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.dial("oscar", "d"); status.Code(err) != codes.Unavailable {
		t.Fatalf("connect with a failed ledger: %v; want Unavailable", err)
	}
	if _, err := e.admin.Kick(adminCtx(ctx), &hubpb.KickRequest{User: "nina", Reason: "x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("kick with a failed ledger: %v; want Unavailable", err)
	}
	if _, err := e.admin.Ban(adminCtx(ctx), &hubpb.BanRequest{User: "nina", Reason: "x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("ban with a failed ledger: %v; want Unavailable", err)
	}
	hc, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health with a failed ledger: %v, %v; want NOT_SERVING", hc.GetStatus(), err)
	}
	ro, err := ledger.Open(filepath.Join(e.dir, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.Head().Seq != head {
		t.Fatalf("ledger grew from %d to %d while failed", head, ro.Head().Seq)
	}
	// Operators are told, at error level.
	if out := logs.String(); !strings.Contains(out, `level=ERROR msg="ledger append failed; refusing the action"`) {
		t.Fatalf("no error logged for the failed appends; logs:\n%s", out)
	}
	if got := e.metric("sessionledger_ledger_append_failures_total "); got == "" || got == "sessionledger_ledger_append_failures_total 0" {
		t.Fatalf("append failures metric %q; want the failures counted", got)
	}
}

// TestResumeRedeliversEveryTargetAcrossRestart: notifications to the user,
// to the session and to everyone that the client did not ack are
// redelivered in order on resume, also after the hub restarted (broadcasts
// then come from the start-up read of the log, the rest from the indexes),
// and nothing addressed to someone else is.
func TestResumeRedeliversEveryTargetAcrossRestart(t *testing.T) {
	e := newEnv(t, hub.Config{RedeliveryLimit: 3, ResumeKey: []byte("a resume key that survives the restart"), ShutdownReconnect: time.Millisecond, ShutdownJitter: time.Millisecond})
	ctx := ctxT(t)
	c := e.mustDial("alice", "phone")
	notify := func(req *hubpb.NotifyRequest) uint64 {
		t.Helper()
		r, err := e.admin.Notify(adminCtx(ctx), req)
		if err != nil {
			t.Fatal(err)
		}
		return r.GetSeq()
	}
	acked := notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "alice", Topic: "acked"})
	if f, err := c.next(); err != nil || f.GetNotification().GetSeq() != acked {
		t.Fatalf("first notification: %v %v", f, err)
	}
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: acked}}}); err != nil {
		t.Fatal(err)
	}
	notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "all-0"}) // beyond the limit of 3
	want := []uint64{
		notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "alice", Topic: "user"}),
		notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "all-1"}),
		notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_SESSION, SessionId: c.welcome.GetSessionId(), Topic: "session"}),
	}
	notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "bob", Topic: "not-alice"})
	e.restart() // alice's session ends with server_shutdown
	want = append(want[1:], notify(&hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "all-2"}))

	r, err := e.dialHello(&hubpb.Hello{User: "alice", Device: "phone", Resume: &hubpb.Resume{
		SessionId: c.welcome.GetSessionId(), Secret: c.welcome.GetResumeSecret(), LastAckedSeq: acked}})
	if err != nil {
		t.Fatal(err)
	}
	if r.welcome.GetResumedFrom() != c.welcome.GetSessionId() || r.welcome.GetRedelivering() != 3 || !r.welcome.GetRedeliveryTruncated() ||
		r.welcome.GetOldestRedeliveredSeq() != want[0] {
		t.Fatalf("welcome %v; want resumed_from %s and 3 redeliveries (the limit) from seq %d, truncated", r.welcome, c.welcome.GetSessionId(), want[0])
	}
	var got []uint64
	for range want {
		f, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		n := f.GetNotification()
		if !n.GetRedelivered() {
			t.Fatalf("frame %v is not a redelivery", f)
		}
		got = append(got, n.GetSeq())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("redelivered seqs %v; want %v (the newest 3, in order)", got, want)
	}
}

// stuck connects a client that never reads, then fills its stream with
// notifications until the server's Send blocks on flow control.
func (e *env) stuck(user string) *client {
	e.t.Helper()
	c := e.mustDial(user, "d")
	big := make([]byte, 60<<10)
	for i := range 40 {
		big[0] = byte(i)
		if _, err := e.admin.Notify(adminCtx(ctxT(e.t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: user, Topic: "bulk", Payload: big}); err != nil {
			e.t.Fatal(err)
		}
	}
	return c
}

// TestKickEndsAClientThatStopsReading: a kicked session whose handler is
// stuck sending to a client that does not read still ends, within twice
// the graceful timeout, recorded as kicked.
func TestKickEndsAClientThatStopsReading(t *testing.T) {
	e := newEnv(t, hub.Config{GracefulTimeout: 200 * time.Millisecond})
	c := e.stuck("sloth")
	from := e.store.Head().Seq
	if _, err := e.admin.Kick(adminCtx(ctxT(t)), &hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reason: "stuck"}); err != nil {
		t.Fatal(err)
	}
	end := e.waitEvent(from, "session_disconnected of the stuck session", disconnectOf(c.welcome.GetSessionId()))
	if got := end.Event.GetSessionDisconnected().GetCause(); got != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED {
		t.Fatalf("cause %v; want KICKED", got)
	}
}

// TestForcedShutdownWithAStuckClient: when the shutdown's time is up,
// sessions still stuck are closed, their ends recorded as server_shutdown,
// and Shutdown returns (it used to deadlock on its own lock).
func TestForcedShutdownWithAStuckClient(t *testing.T) {
	e := newEnv(t, hub.Config{GracefulTimeout: 5 * time.Second})
	c := e.stuck("sloth")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("forced shutdown returned nil; want the deadline error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return 10 s after its deadline")
	}
	end := e.waitEvent(1, "session_disconnected of the stuck session", disconnectOf(c.welcome.GetSessionId()))
	if got := end.Event.GetSessionDisconnected().GetCause(); got != eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN {
		t.Fatalf("cause %v; want SERVER_SHUTDOWN", got)
	}
}

// TestAdminWritesRefusedDuringShutdown: once shutdown began, Kick, Ban,
// Unban and Notify are refused with Unavailable before anything is
// recorded (the projections may already be closed).
func TestAdminWritesRefusedDuringShutdown(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	if err := e.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	head := e.store.Head().Seq
	if _, err := e.admin.Kick(adminCtx(ctx), &hubpb.KickRequest{User: "u", Reason: "late"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("kick during shutdown: %v; want Unavailable", err)
	}
	if _, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("notify during shutdown: %v; want Unavailable", err)
	}
	if got := e.store.Head().Seq; got != head {
		t.Fatalf("ledger grew from %d to %d during shutdown", head, got)
	}
}

// TestShutdownDoesNotWaitForHello: a stream that never sends Hello is
// ended by a shutdown at once (Unavailable), not after the Hello timeout.
func TestShutdownDoesNotWaitForHello(t *testing.T) {
	e := newEnv(t, hub.Config{HelloTimeout: time.Minute})
	s, err := hubpb.NewHubClient(e.conn).Connect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// A session welcomed on the same connection after the silent stream
	// opened: by then the hub has long been waiting for the silent one's
	// Hello (a Welcome waits for a durable append).
	helloOn(t, e.conn, "talker")
	start := time.Now()
	if err := e.srv.Shutdown(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %s with a stream waiting for Hello; want it at once", d)
	}
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream without Hello at shutdown: %v; want Unavailable", err)
	}
}

// TestHealthSeesAStoppedProjectionRunner: when the ledger goes away with
// no traffic, the projection runner stops following it; health turns
// NOT_SERVING by itself (no failed append needed) and Err names the
// runner's error.
func TestHealthSeesAStoppedProjectionRunner(t *testing.T) {
	e := newEnv(t, hub.Config{})
	if err := e.srv.Err(); err != nil {
		t.Fatalf("Err of a healthy hub: %v", err)
	}
	if got := e.metric("sessionledger_up "); got != "sessionledger_up 1" {
		t.Fatalf("metric %q; want sessionledger_up 1", got)
	}
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(e.conn)
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "sessionledger.hub.v1.Hub"})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health still %v, %v 5 s after the ledger closed", res.GetStatus(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.srv.Err(); err == nil || !strings.Contains(err.Error(), "projections: ") {
		t.Fatalf("Err = %v; want the projection runner's error in it", err)
	}
	if got := e.metric("sessionledger_up "); got != "sessionledger_up 0" {
		t.Fatalf("metric %q; want sessionledger_up 0", got)
	}
}

// TestProjectionAnomaliesMetric: what the projections skip or find odd is
// exported by kind, read at scrape time.
func TestProjectionAnomaliesMetric(t *testing.T) {
	e := newEnv(t, hub.Config{})
	if got := e.metric(`sessionledger_projection_anomalies_total{kind="kicks_missed"}`); got != `sessionledger_projection_anomalies_total{kind="kicks_missed"} 0` {
		t.Fatalf("before: %q; want 0", got)
	}
	e.kick(&hubpb.KickRequest{SessionId: "01ARZ3NDEKTSV4RRFFQ69G5FAV"}) // no such session
	if got := e.metric(`sessionledger_projection_anomalies_total{kind="kicks_missed"}`); got != `sessionledger_projection_anomalies_total{kind="kicks_missed"} 1` {
		t.Fatalf("after a kick that matched nothing: %q; want 1", got)
	}
	if got := e.metric(`sessionledger_projection_anomalies_total{kind="applied"}`); got != "" {
		t.Fatalf("applied records are not anomalies, yet %q", got)
	}
}

// TestHealthSeesProjectionsBehindTheLog: projections that stop applying
// while the log grows (here a reader holds their state, so the runner
// cannot apply) leave every connect and kick waiting; health must say so
// (NOT_SERVING, sessionledger_up 0, Err naming ErrStalled) once a record
// has waited the runner's StallAfter, and recover once they catch up.
func TestHealthSeesProjectionsBehindTheLog(t *testing.T) {
	e := newEnvProj(t, hub.Config{}, projections.Config{StallAfter: 200 * time.Millisecond})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock) // before the env's cleanup stops the hub
	held := make(chan struct{})
	go e.d.Projections().Read(func(*projections.State) { close(held); <-release })
	<-held
	if _, err := e.store.Append(ctxT(t), &eventpb.Event{Type: tNotification, Actor: "ops-alice",
		Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL, Topic: "t"}}}); err != nil {
		t.Fatal(err)
	}
	hc := healthpb.NewHealthClient(e.conn)
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			res, err := hc.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: "sessionledger.hub.v1.Hub"})
			if err == nil && res.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v, %v; want %v", res.GetStatus(), err, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if err := e.srv.Err(); !errors.Is(err, projections.ErrStalled) {
		t.Fatalf("Err = %v; want projections.ErrStalled", err)
	}
	unblock()
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if err := e.srv.Err(); err != nil {
		t.Fatalf("Err after catching up = %v; want nil", err)
	}
	if got := e.metric("sessionledger_up "); got != "sessionledger_up 1" {
		t.Fatalf("metric %q; want sessionledger_up 1", got)
	}
}
