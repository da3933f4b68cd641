package hub_test

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// The WebSocket transport carries what gRPC sessions have: client tokens in
// Hello (checked by the hub's one verifier), Refresh and Refreshed, and the
// ends and refusals of tokens, kicks and drains, each with its close code.

// wsRefresh sends a Refresh and returns the Refreshed answer.
func (w *wsClient) wsRefresh(token string) *hubpb.Refreshed {
	w.t.Helper()
	w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Refresh{Refresh: &hubpb.Refresh{Token: token}}})
	for {
		f, err := w.next()
		if err != nil {
			w.t.Fatalf("waiting for Refreshed: %v", err)
		}
		if r := f.GetRefreshed(); r != nil {
			return r
		}
	}
}

// wsRefused connects, says h and expects a Rejected frame and a close.
func (e *env) wsRefused(json bool, h *hubpb.Hello) (*hubpb.Rejected, int, string) {
	e.t.Helper()
	w, _, err := e.wsConnect(json, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: h}})
	frames, code, reason := w.expectClose()
	if len(frames) != 1 || frames[0].GetRejected() == nil {
		e.t.Fatalf("frames %v before the close; want one Rejected", frames)
	}
	return frames[0].GetRejected(), code, reason
}

// TestWebSocketTokenRefreshAndExpiry: a WebSocket session authenticates
// with a client JWT in Hello (one without a token, or with a bad one, is
// refused with 4607), refreshes it with a Refresh frame (refused refreshes
// answered and recorded, an accepted one moves the expiry), and ends with
// token_expired (close 4008) when the refreshed token expires.
func TestWebSocketTokenRefreshAndExpiry(t *testing.T) {
	clk := &clock{}
	e := newEnv(t, hub.Config{JWTSecret: testSecret, Now: clk.now, HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: time.Hour})
	now := clk.now()
	for _, h := range []*hubpb.Hello{{User: "di"}, {Token: "not-a-token"}} {
		w, _, err := e.wsConnect(true, nil)
		if err != nil {
			t.Fatal(err)
		}
		w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: h}})
		if _, code, _ := w.expectClose(); code != 4607 {
			t.Fatalf("Hello %v: closed with %d; want 4607 (unauthenticated, do not retry)", h, code)
		}
	}
	w, err := e.wsDialHello(true, &hubpb.Hello{Token: signHS(t, claims("di", "web", "t1", now, now.Add(time.Minute)))})
	if err != nil {
		t.Fatal(err)
	}
	exp1 := jwt.NewNumericDate(now.Add(time.Minute)).Time
	if got := w.welcome.GetTokenExpiresUnixNano(); got != exp1.UnixNano() {
		t.Fatalf("welcome says the token expires at %d; want %d", got, exp1.UnixNano())
	}
	conn := e.connectEvent(w.welcome.GetSessionId())
	if transportOf(conn) != hub.TransportWSJSON || conn.Event.GetSessionConnected().GetToken().GetId() != "t1" || conn.Event.GetUser() != "di" {
		t.Fatalf("connect event %v; want di's, over websocket+json, with token t1", conn.Event)
	}
	head := e.store.Head().Seq
	r := w.wsRefresh(signHS(t, claims("eve", "web", "e1", now, now.Add(2*time.Minute))))
	if r.GetOk() || r.GetTokenExpiresUnixNano() != exp1.UnixNano() || r.GetEventId() == "" {
		t.Fatalf("refresh with another user's token: %v; want refused, the old expiry kept, the refusal's event", r)
	}
	rec := e.waitEvent(head, "token_refresh_refused", isType(eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED))
	if rec.ID.String() != r.GetEventId() || rec.Event.GetTokenRefreshRefused().GetCode() != "other_user" {
		t.Fatalf("recorded refusal %v; want other_user, named in the answer", rec.Event)
	}
	r = w.wsRefresh(signHS(t, claims("di", "web", "t2", now, now.Add(3*time.Minute))))
	exp2 := jwt.NewNumericDate(now.Add(3 * time.Minute)).Time
	if !r.GetOk() || r.GetTokenExpiresUnixNano() != exp2.UnixNano() {
		t.Fatalf("refresh: %v; want ok until %s", r, exp2)
	}
	// Past the first token's expiry the session lives on; past the second's
	// it ends.
	clk.advance(2 * time.Minute)
	time.Sleep(200 * time.Millisecond)
	clk.advance(time.Minute + time.Second)
	frames, code, _ := w.expectClose()
	d := lastDisconnect(frames)
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_TOKEN_EXPIRED || d.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED || code != 4008 {
		t.Fatalf("end %v, close %d; want token_expired, reconnect allowed, 4008", d, code)
	}
	end := e.waitEnd(head, w.welcome.GetSessionId())
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_TOKEN_EXPIRED {
		t.Fatalf("recorded end %v; want token_expired", end.Event)
	}
}

// TestWebSocketRevokedAndKicked: a revocation ends the WebSocket session
// holding the token (revoked, close 4507) and refuses the token afterwards
// (Rejected revoked, close 4609, naming the revocation); a kick with
// reconnect not allowed ends a session (4501) and refuses the device's
// next connect for the window (Rejected kicked, close 4610, naming the
// kick).
func TestWebSocketRevokedAndKicked(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret, NoReconnectWindow: time.Hour, RejectWindow: time.Hour})
	now := time.Now()
	tok := signHS(t, claims("ivy", "web", "i1", now, now.Add(time.Hour)))
	w, err := e.wsDialHello(false, &hubpb.Hello{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	rep := e.revoke(&hubpb.RevokeRequest{TokenId: "i1"})
	frames, code, _ := w.expectClose()
	if d := lastDisconnect(frames); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_REVOKED || d.GetEventId() != rep.GetEventId() || code != 4507 {
		t.Fatalf("end %v, close %d; want revoked naming %s, 4507", d, code, rep.GetEventId())
	}
	head := e.store.Head().Seq
	rj, code, reason := e.wsRefused(false, &hubpb.Hello{Token: tok})
	if rj.GetCode() != hub.RejectRevoked || rj.GetEventId() != rep.GetEventId() || code != 4609 || !strings.HasPrefix(reason, "revoked: ") {
		t.Fatalf("refusal %v, close %d %q; want revoked naming %s, 4609", rj, code, reason, rep.GetEventId())
	}
	e.rejectedRecord(head, hub.RejectRevoked, rep.GetEventId())

	tok2 := signHS(t, claims("ivy", "web", "i2", now, now.Add(time.Hour)))
	w, err = e.wsDialHello(true, &hubpb.Hello{Token: tok2})
	if err != nil {
		t.Fatal(err)
	}
	kick := e.kick(&hubpb.KickRequest{User: "ivy", Reason: "abuse", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	frames, code, _ = w.expectClose()
	if d := lastDisconnect(frames); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != kick.GetEventId() || code != 4501 {
		t.Fatalf("end %v, close %d; want kicked naming %s, 4501", d, code, kick.GetEventId())
	}
	e.waitEnd(kick.GetSeq(), w.welcome.GetSessionId())
	head = e.store.Head().Seq
	tok3 := signHS(t, claims("ivy", "web", "i3", now, now.Add(time.Hour)))
	rj, code, _ = e.wsRefused(true, &hubpb.Hello{Token: tok3})
	if rj.GetCode() != hub.RejectKicked || rj.GetEventId() != kick.GetEventId() || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED || code != 4610 {
		t.Fatalf("refusal %v, close %d; want kicked naming %s, not allowed, 4610", rj, code, kick.GetEventId())
	}
	e.rejectedRecord(head, hub.RejectKicked, kick.GetEventId())
}

// TestWebSocketDrain: a drain ends WebSocket sessions with drained and the
// advised delay (close 4009), and the drained node refuses new ones
// (Rejected draining, close 4111: retry, elsewhere).
func TestWebSocketDrain(t *testing.T) {
	e := newEnv(t, hub.Config{})
	w := e.wsMustDial(true, "ann", "web")
	const window = 2 * time.Second
	rep, err := e.admin.Drain(adminCtx(ctxT(t)), &hubpb.DrainRequest{Reason: "upgrade", WindowMs: window.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	frames, code, reason := w.expectClose()
	d := lastDisconnect(frames)
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_DRAINED || d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER ||
		d.GetEventId() != rep.GetEventId() || code != 4009 || reason != "upgrade" {
		t.Fatalf("end %v, close %d %q; want drained naming %s, reconnect after, 4009 upgrade", d, code, reason, rep.GetEventId())
	}
	r := e.waitEnd(rep.GetSeq(), w.welcome.GetSessionId())
	if r.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED {
		t.Fatalf("recorded end %v; want drained", r.Event)
	}
	rj, code, _ := e.wsRefused(false, &hubpb.Hello{User: "bob", Device: "web"})
	if rj.GetCode() != hub.RejectDraining || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || code != 4111 {
		t.Fatalf("refusal %v, close %d; want draining, reconnect after, 4111", rj, code)
	}
	e.waitEvent(rep.GetSeq(), "the refused connect", func(r *ledger.Record) bool {
		return r.Event.GetConnectRejected().GetCode() == hub.RejectDraining && r.Event.GetUser() == "bob"
	})
}
