package hub_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// wsClient is one session over a real WebSocket connection to the env's
// hubd, speaking either subprotocol.
type wsClient struct {
	t       *testing.T
	c       *websocket.Conn
	json    bool
	welcome *hubpb.Welcome
}

// wsConnect opens a WebSocket to the env's /connect without saying Hello.
func (e *env) wsConnect(json bool, header http.Header) (*wsClient, *http.Response, error) {
	sub := hub.SubprotocolProto
	if json {
		sub = hub.SubprotocolJSON
	}
	d := websocket.Dialer{Subprotocols: []string{sub}, HandshakeTimeout: 5 * time.Second}
	c, res, err := d.Dial("ws://"+e.ws+"/connect", header)
	if err != nil {
		return nil, res, err
	}
	w := &wsClient{t: e.t, c: c, json: json}
	e.t.Cleanup(func() { c.Close() })
	return w, res, nil
}

// wsDialHello connects and says h; it returns the client once welcomed.
func (e *env) wsDialHello(json bool, h *hubpb.Hello) (*wsClient, error) {
	w, _, err := e.wsConnect(json, nil)
	if err != nil {
		return nil, err
	}
	w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: h}})
	f, err := w.next()
	if err != nil {
		return nil, err
	}
	if w.welcome = f.GetWelcome(); w.welcome == nil {
		return nil, errors.New("first server frame is not Welcome: " + f.String())
	}
	return w, nil
}

func (e *env) wsMustDial(json bool, user, device string) *wsClient {
	e.t.Helper()
	w, err := e.wsDialHello(json, &hubpb.Hello{User: user, Device: device})
	if err != nil {
		e.t.Fatalf("websocket connect %s/%s: %v", user, device, err)
	}
	return w
}

func (w *wsClient) send(f *hubpb.ClientFrame) {
	w.t.Helper()
	var err error
	if w.json {
		var b []byte
		if b, err = protojson.Marshal(f); err == nil {
			err = w.c.WriteMessage(websocket.TextMessage, b)
		}
	} else {
		var b []byte
		if b, err = proto.Marshal(f); err == nil {
			err = w.c.WriteMessage(websocket.BinaryMessage, b)
		}
	}
	if err != nil {
		w.t.Fatalf("websocket send: %v", err)
	}
}

// next returns the next non-ping server frame, or the read's error (a
// *websocket.CloseError once the server closed).
func (w *wsClient) next() (*hubpb.ServerFrame, error) {
	for {
		_ = w.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		mt, b, err := w.c.ReadMessage()
		if err != nil {
			return nil, err
		}
		f := &hubpb.ServerFrame{}
		if w.json {
			if mt != websocket.TextMessage {
				return nil, errors.New("binary message under the JSON subprotocol")
			}
			err = protojson.Unmarshal(b, f)
		} else {
			if mt != websocket.BinaryMessage {
				return nil, errors.New("text message under the protobuf subprotocol")
			}
			err = proto.Unmarshal(b, f)
		}
		if err != nil {
			return nil, err
		}
		if f.GetPing() != nil {
			continue
		}
		return f, nil
	}
}

// expectClose reads until the server closes and returns the frames before
// the close, and the close code and reason.
func (w *wsClient) expectClose() ([]*hubpb.ServerFrame, int, string) {
	w.t.Helper()
	var frames []*hubpb.ServerFrame
	for {
		f, err := w.next()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				w.t.Fatalf("websocket ended with %v; want a close frame", err)
			}
			return frames, ce.Code, ce.Text
		}
		frames = append(frames, f)
	}
}

func lastDisconnect(frames []*hubpb.ServerFrame) *hubpb.Disconnect {
	for i := len(frames) - 1; i >= 0; i-- {
		if d := frames[i].GetDisconnect(); d != nil {
			return d
		}
	}
	return nil
}

// connectEvent returns the connect event of session (connected or
// reconnected).
func (e *env) connectEvent(session string) *ledger.Record {
	e.t.Helper()
	return e.waitEvent(1, "connect of "+session, func(r *ledger.Record) bool {
		typ := r.Event.GetType()
		return (typ == tConnected || typ == tReconnected) && r.Event.GetSession() == session
	})
}

func transportOf(r *ledger.Record) string {
	if c := r.Event.GetSessionConnected(); c != nil {
		return c.GetTransport()
	}
	return r.Event.GetSessionReconnected().GetTransport()
}

// TestWebSocketAndGRPCSessionsShareTheRules holds a WebSocket session
// (each subprotocol) and a gRPC session of the same user: a notification
// reaches all three, and one kick of the user ends all three with the same
// reason and event id — a Disconnect frame, then on the WebSocket the
// close code for "kicked, do not reconnect" and the reason; on gRPC the
// status. The ledger names each session's transport and records each end
// with the kick's id.
func TestWebSocketAndGRPCSessionsShareTheRules(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	g := e.mustDial("erin", "phone")
	wp := e.wsMustDial(false, "erin", "laptop")
	wj := e.wsMustDial(true, "erin", "tablet")

	for id, want := range map[string]string{g.welcome.GetSessionId(): hub.TransportGRPC,
		wp.welcome.GetSessionId(): hub.TransportWSProto, wj.welcome.GetSessionId(): hub.TransportWSJSON} {
		if got := transportOf(e.connectEvent(id)); got != want {
			t.Errorf("session %s recorded transport %q; want %q", id, got, want)
		}
		info, err := e.admin.GetSession(adminCtx(ctx), &hubpb.GetSessionRequest{SessionId: id})
		if err != nil || info.GetTransport() != want {
			t.Errorf("GetSession(%s) transport = %q, %v; want %q", id, info.GetTransport(), err, want)
		}
	}

	rep, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "erin", Topic: "news", Payload: []byte(`{"n":1}`)})
	if err != nil || rep.GetSessions() != 3 {
		t.Fatalf("notify: %v, %v; want 3 sessions", rep, err)
	}
	for name, next := range map[string]func() (*hubpb.ServerFrame, error){"grpc": g.next, "ws+proto": wp.next, "ws+json": wj.next} {
		f, err := next()
		if n := f.GetNotification(); err != nil || n.GetSeq() != rep.GetSeq() || !bytes.Equal(n.GetPayload(), []byte(`{"n":1}`)) {
			t.Fatalf("%s: got %v, %v; want the notification of seq %d", name, f, err, rep.GetSeq())
		}
	}
	wp.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: rep.GetSeq()}}})
	wj.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: rep.GetSeq()}}})

	kick, err := e.admin.Kick(adminCtx(ctx), &hubpb.KickRequest{User: "erin", Reason: "account closed", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	if err != nil || kick.GetSessions() != 3 {
		t.Fatalf("kick: %v, %v; want 3 sessions", kick, err)
	}
	gd, st := g.expectEnd()
	if gd.GetEventId() != kick.GetEventId() || gd.GetReason() != "account closed" || st.Code() != codes.Aborted {
		t.Fatalf("grpc end: %v, %v; want the kick %s and Aborted", gd, st, kick.GetEventId())
	}
	for name, w := range map[string]*wsClient{"ws+proto": wp, "ws+json": wj} {
		frames, code, reason := w.expectClose()
		d := lastDisconnect(frames)
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != kick.GetEventId() || d.GetReason() != "account closed" ||
			d.GetActor() != "ops-alice" || d.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
			t.Errorf("%s: Disconnect frame %v; want kicked by ops-alice, event %s, not allowed", name, d, kick.GetEventId())
		}
		if code != 4501 || reason != "account closed" {
			t.Errorf("%s: closed with %d %q; want 4501 (kicked, do not reconnect) \"account closed\"", name, code, reason)
		}
	}
	kickRec := e.events(kick.GetSeq())[0]
	for _, id := range []string{g.welcome.GetSessionId(), wp.welcome.GetSessionId(), wj.welcome.GetSessionId()} {
		dd := e.waitEnd(1, id).Event.GetSessionDisconnected()
		if dd.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || !bytes.Equal(dd.GetCauseEventId(), kickRec.ID[:]) {
			t.Errorf("end of %s: %v; want kicked by %s", id, dd, kickRec.ID)
		}
	}
}

// TestWebSocketSupersedeAcrossTransports: a login on the same device
// supersedes the session there whatever carries either of them.
func TestWebSocketSupersedeAcrossTransports(t *testing.T) {
	e := newEnv(t, hub.Config{Policy: projectionsPolicy(0, true)})
	g := e.mustDial("fay", "phone")
	w := e.wsMustDial(true, "fay", "phone")
	d, st := g.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != w.welcome.GetSessionId() || st.Code() != codes.Aborted {
		t.Fatalf("grpc session: %v, %v; want superseded by the websocket session %s", d, st, w.welcome.GetSessionId())
	}
	g2 := e.mustDial("fay", "phone")
	frames, code, _ := w.expectClose()
	if wd := lastDisconnect(frames); wd.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || wd.GetSupersededBy() != g2.welcome.GetSessionId() {
		t.Fatalf("websocket session: %v; want superseded by %s", wd, g2.welcome.GetSessionId())
	}
	if code != 4503 {
		t.Fatalf("websocket closed with %d; want 4503 (superseded: do not reconnect)", code)
	}
	end := e.waitEnd(1, w.welcome.GetSessionId()).Event.GetSessionDisconnected()
	if end.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED || end.GetSupersededBy() != g2.welcome.GetSessionId() {
		t.Fatalf("recorded end %v; want superseded by %s", end, g2.welcome.GetSessionId())
	}
}

// TestWebSocketResumeRedelivers: a WebSocket client whose connection drops
// resumes with its last acked seq and gets what it missed, in order,
// before anything live.
func TestWebSocketResumeRedelivers(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	w := e.wsMustDial(true, "gus", "browser")
	notify := func(topic string) *hubpb.ActionReply {
		t.Helper()
		rep, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "gus", Topic: topic, Payload: []byte(topic)})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	first := notify("one")
	if f, err := w.next(); err != nil || f.GetNotification().GetSeq() != first.GetSeq() {
		t.Fatalf("got %v, %v; want notification %d", f, err, first.GetSeq())
	}
	w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: first.GetSeq()}}})
	w.c.NetConn().Close() // the network drops: no close frame, no Goodbye
	e.waitEnd(1, w.welcome.GetSessionId())
	two, three := notify("two"), notify("three")

	r, err := e.wsDialHello(true, &hubpb.Hello{User: "gus", Device: "browser", Resume: &hubpb.Resume{
		SessionId: w.welcome.GetSessionId(), Secret: w.welcome.GetResumeSecret(), LastAckedSeq: first.GetSeq()}})
	if err != nil {
		t.Fatal(err)
	}
	if r.welcome.GetResumedFrom() != w.welcome.GetSessionId() || r.welcome.GetRedelivering() != 2 || r.welcome.GetOldestRedeliveredSeq() != two.GetSeq() {
		t.Fatalf("welcome %v; want resumed from %s, 2 redelivered from %d", r.welcome, w.welcome.GetSessionId(), two.GetSeq())
	}
	for _, want := range []*hubpb.ActionReply{two, three} {
		f, err := r.next()
		if n := f.GetNotification(); err != nil || n.GetSeq() != want.GetSeq() || !n.GetRedelivered() {
			t.Fatalf("got %v, %v; want seq %d redelivered", f, err, want.GetSeq())
		}
	}
	live := notify("four")
	if f, err := r.next(); err != nil || f.GetNotification().GetSeq() != live.GetSeq() || f.GetNotification().GetRedelivered() {
		t.Fatalf("got %v, %v; want live seq %d", f, err, live.GetSeq())
	}
	if got := transportOf(e.connectEvent(r.welcome.GetSessionId())); got != hub.TransportWSJSON {
		t.Errorf("resumed session recorded transport %q; want %q", got, hub.TransportWSJSON)
	}
	dropped := e.waitEnd(1, w.welcome.GetSessionId()).Event
	if dropped.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatalf("dropped session's end %v; want client_closed", dropped)
	}
}

// TestWebSocketProtocolErrors: a client that sends garbage, an oversized
// message or a text message under the binary subprotocol gets a close
// code that says which, with a reason, and its end is recorded.
func TestWebSocketProtocolErrors(t *testing.T) {
	e := newEnv(t, hub.Config{})
	cases := []struct {
		name       string
		json       bool
		mt         int
		msg        []byte
		code       int
		reasonPart string
	}{
		{"garbage", false, websocket.BinaryMessage, []byte{0xff, 0xff, 0xff, 0x01}, 1007, "malformed frame"},
		{"oversized", false, websocket.BinaryMessage, bytes.Repeat([]byte{'x'}, 70_000), 1009, "frame too large"},
		{"text under binary", false, websocket.TextMessage, []byte(`{"ack":{"seq":"1"}}`), 1003, "text message under subprotocol"},
		{"binary under json", true, websocket.BinaryMessage, []byte{0x12, 0x02, 0x08, 0x01}, 1003, "binary message under subprotocol"},
		{"json garbage", true, websocket.TextMessage, []byte(`{"ack":`), 1007, "malformed frame"},
		{"second hello", false, -1, nil, 1002, "Hello sent twice"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := e.wsMustDial(tc.json, "hal", "dev"+string(rune('a'+i)))
			if tc.mt == -1 {
				w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "hal"}}})
			} else if err := w.c.WriteMessage(tc.mt, tc.msg); err != nil {
				t.Fatal(err)
			}
			_, code, reason := w.expectClose()
			if code != tc.code || !strings.Contains(reason, tc.reasonPart) {
				t.Fatalf("closed with %d %q; want %d with %q", code, reason, tc.code, tc.reasonPart)
			}
			end := e.waitEnd(1, w.welcome.GetSessionId()).Event
			if end.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED ||
				!strings.HasPrefix(end.GetReason(), "protocol error: ") || !strings.Contains(end.GetReason(), tc.reasonPart) {
				t.Fatalf("recorded end %q (%v); want client_closed with \"protocol error: ...%s\"", end.GetReason(), end.GetSessionDisconnected().GetCause(), tc.reasonPart)
			}
		})
	}
}

// TestWebSocketOriginAndSubprotocol: a page of another origin is refused
// with 403 before any upgrade, and the refusal is recorded; a page served
// by hubd's own address, and a client that sends no Origin, get in; a
// client offering neither subprotocol is refused with 400.
func TestWebSocketOriginAndSubprotocol(t *testing.T) {
	e := newEnv(t, hub.Config{})
	_, res, err := e.wsConnect(false, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: %v, %v; want 403", res, err)
	}
	rec := e.waitEvent(1, "connect_rejected", isType(tRejected))
	if c := rec.Event.GetConnectRejected(); c.GetCode() != hub.RejectOrigin || !strings.Contains(rec.Event.GetReason(), "https://evil.example") || c.GetRemoteAddr() == "" {
		t.Fatalf("recorded refusal %v; want origin_refused naming the origin and the remote address", rec.Event)
	}
	if _, _, err := e.wsConnect(false, http.Header{"Origin": {"http://" + e.ws}}); err != nil {
		t.Fatalf("same origin: %v; want it let in", err)
	}
	d := websocket.Dialer{Subprotocols: []string{"chat"}}
	if _, res, err := d.Dial("ws://"+e.ws+"/connect", nil); err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
		t.Fatalf("no known subprotocol: %v, %v; want 400", res, err)
	}
}

// TestWebSocketRefusedConnect: a banned user is told why in a Rejected
// frame, then the close code says "refused, do not retry" (a ban without
// expiry); the refusal is recorded as on gRPC.
func TestWebSocketRefusedConnect(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	if _, err := e.admin.Ban(adminCtx(ctx), &hubpb.BanRequest{User: "ian", Reason: "fraud"}); err != nil {
		t.Fatal(err)
	}
	w, _, err := e.wsConnect(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "ian", Device: "web"}}})
	frames, code, reason := w.expectClose()
	if len(frames) != 1 || frames[0].GetRejected().GetCode() != hub.RejectBanned || frames[0].GetRejected().GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("frames %v; want one Rejected{banned, not allowed}", frames)
	}
	if code != 4604 || !strings.Contains(reason, "fraud") {
		t.Fatalf("closed with %d %q; want 4604 (banned, do not retry) with the ban's reason", code, reason)
	}
	rec := e.waitEvent(1, "connect_rejected", isType(tRejected))
	if rec.Event.GetUser() != "ian" || rec.Event.GetConnectRejected().GetCode() != hub.RejectBanned {
		t.Fatalf("recorded %v; want ian's banned refusal", rec.Event)
	}
}

// TestWebSocketCloseCodes pins the documented table (docs/api.md).
func TestWebSocketCloseCodes(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	for _, tc := range []struct {
		end  error
		code int
	}{
		{nil, 1000},
		{&hub.Disconnect{Cause: hub.CauseKicked, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4001},
		{&hub.Disconnect{Cause: hub.CauseKicked, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4001},
		{&hub.Disconnect{Cause: hub.CauseKicked, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4501},
		{&hub.Disconnect{Cause: hub.CauseBanned, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4002},
		{&hub.Disconnect{Cause: hub.CauseBanned, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4502},
		{&hub.Disconnect{Cause: hub.CauseSuperseded, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4503},
		{&hub.Disconnect{Cause: hub.CauseIdleTimeout, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4004},
		{&hub.Disconnect{Cause: hub.CauseServerShutdown, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4005},
		{&hub.Disconnect{Cause: hub.CauseSlowConsumer, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4006},
		{&hub.Disconnect{Cause: hub.CauseRevoked, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4507},
		{&hub.Disconnect{Cause: hub.CauseTokenExpired, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4008},
		{&hub.Disconnect{Cause: hub.CauseDrained, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4009},
		{&hub.Disconnect{Cause: hub.CauseLost, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4010},
		{&hub.Rejection{Code: hub.RejectRateLimited, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4101},
		{&hub.Rejection{Code: hub.RejectNodeFull, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4102},
		{&hub.Rejection{Code: hub.RejectResumeRefused, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}, 4103},
		{&hub.Rejection{Code: hub.RejectResumeRefused, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4603},
		{&hub.Rejection{Code: hub.RejectBanned, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4104},
		{&hub.Rejection{Code: hub.RejectBanned, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4604},
		{&hub.Rejection{Code: hub.RejectRevoked, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4609},
		{&hub.Rejection{Code: hub.RejectKicked, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4110},
		{&hub.Rejection{Code: hub.RejectKicked, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}, 4610},
		{&hub.Rejection{Code: hub.RejectDraining, Reconnect: eventpb.Reconnect_RECONNECT_AFTER}, 4111},
		{hub.ErrShuttingDown, 4105},
		{hub.ErrLedger, 4106},
		{hub.ErrUnauthenticated, 4607},
		{hub.ErrNoHello, 4108},
		{hub.ErrInvalid, 1002},
		{errors.New("something else"), 1011},
	} {
		if code, _ := hub.CloseCode(tc.end); code != tc.code {
			t.Errorf("CloseCode(%v) = %d; want %d", tc.end, code, tc.code)
		}
	}
	_, reason := hub.CloseCode(&hub.Disconnect{Cause: hub.CauseKicked, Reason: long})
	if len(reason) > 200 {
		t.Logf("reason is cut when sent, not here: %d bytes", len(reason))
	}
}

// TestWebSocketAllowedOrigins: the listed origins get in (scheme and port
// included), and pages of the host itself; others do not; a malformed
// entry is refused up front.
func TestWebSocketAllowedOrigins(t *testing.T) {
	e := newEnv(t, hub.Config{})
	if _, err := e.srv.NewWebSocket(hub.WebSocketConfig{AllowedOrigins: []string{"app.example"}}); err == nil {
		t.Fatal("NewWebSocket accepted an origin without a scheme")
	}
	ws, err := e.srv.NewWebSocket(hub.WebSocketConfig{AllowedOrigins: []string{"https://app.example", "http://localhost:3000"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(ws)
	t.Cleanup(func() {
		srv.Close()
		ws.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ws.Wait(ctx); err != nil {
			t.Error(err)
		}
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/connect"
	d := websocket.Dialer{Subprotocols: []string{hub.SubprotocolProto}}
	for origin, want := range map[string]int{"https://app.example": http.StatusSwitchingProtocols, "http://localhost:3000": http.StatusSwitchingProtocols,
		"http://app.example": http.StatusForbidden, "https://app.example:8443": http.StatusForbidden, "http://localhost:3001": http.StatusForbidden,
		srv.URL: http.StatusSwitchingProtocols} {
		c, res, err := d.Dial(url, http.Header{"Origin": {origin}})
		if res == nil || res.StatusCode != want {
			t.Errorf("origin %s: %v, %v; want HTTP %d", origin, res, err, want)
		}
		if c != nil {
			c.Close() // no Hello: the session is never admitted
		}
	}
}

// TestWebSocketMessageSizes: notifications whose messages take each of the
// three length encodings of a WebSocket frame (up to 125 bytes, up to
// 65,535, beyond) arrive whole, over both subprotocols.
func TestWebSocketMessageSizes(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := ctxT(t)
	for _, json := range []bool{false, true} {
		w := e.wsMustDial(json, "ivy", fmt.Sprint("json-", json))
		for _, n := range []int{1, 100, 126, 1000, 40_000, 65_536} {
			payload := bytes.Repeat([]byte{'a' + byte(n%26)}, n)
			if _, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_SESSION,
				SessionId: w.welcome.GetSessionId(), Topic: "t", Payload: payload}); err != nil {
				t.Fatal(err)
			}
			f, err := w.next()
			if err != nil || !bytes.Equal(f.GetNotification().GetPayload(), payload) {
				t.Fatalf("json=%v, %d bytes: got %d bytes, %v", json, n, len(f.GetNotification().GetPayload()), err)
			}
		}
	}
}
