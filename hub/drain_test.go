package hub_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// TestDrainMovesSessionsAndRefusesConnects: a drain of this node ends
// every live session with cause drained, each told to reconnect after its
// own delay within the window (recorded, and the same the reducer
// computes from the session id); afterwards the node refuses connects
// (draining, Unavailable, recorded) and reports NOT_SERVING. A restart
// serves again: the drain in the log is history.
func TestDrainMovesSessionsAndRefusesConnects(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	var clients []*client
	for _, u := range []string{"ann", "bob", "cat"} {
		clients = append(clients, e.mustDial(u, "d"))
	}
	const window = 4 * time.Second
	rep, err := e.admin.Drain(adminCtx(ctx), &hubpb.DrainRequest{Reason: "upgrade to 1.4", WindowMs: window.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != 3 {
		t.Errorf("drain addressed %d sessions; want 3", rep.GetSessions())
	}
	for _, c := range clients {
		d, st := c.expectEnd()
		id := c.welcome.GetSessionId()
		want := projections.DrainDelay(id, window)
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_DRAINED || d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER ||
			d.GetReconnectAfterMs() != want.Milliseconds() || d.GetEventId() != rep.GetEventId() || st.Code() != codes.Unavailable {
			t.Errorf("end of %s: %v %v; want drained, reconnect after %s, event %s, Unavailable", id, d, st, want, rep.GetEventId())
		}
		r := e.waitEnd(rep.GetSeq(), id)
		body := r.Event.GetSessionDisconnected()
		if body.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED || body.GetReconnectAfterMs() != want.Milliseconds() || r.Event.GetReason() != "upgrade to 1.4" {
			t.Errorf("recorded end of %s: %v, reason %q", id, body, r.Event.GetReason())
		}
	}
	_, err = e.dial("dan", "d")
	if st, rj := rejected(t, err); st.Code() != codes.Unavailable || rj.GetCode() != hub.RejectDraining || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER {
		t.Fatalf("connect to a drained node: %v %v; want Unavailable, draining, reconnect after", st, rj)
	}
	e.waitEvent(rep.GetSeq(), "the refused connect", isType(eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED))
	hc, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health of a drained node: %v, %v; want NOT_SERVING", hc.GetStatus(), err)
	}

	e.restart()
	e.mustDial("dan", "d")
	hc, err = healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after a restart: %v, %v; want SERVING", hc.GetStatus(), err)
	}
}

// TestDrainRefusesBadRequests: nothing is recorded for a drain that cannot
// be done.
func TestDrainRefusesBadRequests(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	head := e.store.Head().Seq
	for _, tc := range []struct {
		req  *hubpb.DrainRequest
		code codes.Code
	}{
		{&hubpb.DrainRequest{Reason: "x", Node: "node-9"}, codes.InvalidArgument}, // not a cluster: only itself
		{&hubpb.DrainRequest{Reason: "x", WindowMs: -1}, codes.InvalidArgument},
		{&hubpb.DrainRequest{Reason: "x", WindowMs: (2 * time.Hour).Milliseconds()}, codes.InvalidArgument},
		{&hubpb.DrainRequest{Reason: "x", Node: "bad\nname"}, codes.InvalidArgument},
	} {
		if _, err := e.admin.Drain(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("drain %v: %v; want %v", tc.req, err, tc.code)
		}
	}
	if _, err := e.admin.Drain(ctxT(t), &hubpb.DrainRequest{Reason: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("drain without a token: %v; want Unauthenticated", err)
	}
	if got := e.store.Head().Seq; got != head {
		t.Fatalf("head moved from %d to %d: a refused drain recorded something", head, got)
	}
}
