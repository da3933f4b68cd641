package hub_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/projections"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const adminToken = "test-admin-token-0123456789"

// env is a real hub on a real ledger file, served over gRPC on 127.0.0.1.
type env struct {
	t     *testing.T
	dir   string
	d     *daemon.Daemon
	store *ledger.Store
	srv   *hub.Server
	addr  string
	ws    string // the WebSocket transport's address (websocket_test.go)
	conn  *grpc.ClientConn
	admin hubpb.AdminClient
	cfg   hub.Config
	proj  projections.Config
	down  bool

	// serverCreds and clientCreds secure the transport (default plaintext).
	serverCreds credentials.TransportCredentials
	clientCreds credentials.TransportCredentials
	// daemonCfg, if set, changes the daemon's configuration before start.
	daemonCfg func(*daemon.Config)
}

func newEnv(t *testing.T, cfg hub.Config) *env {
	t.Helper()
	return newEnvWith(t, cfg, nil, nil)
}

// newEnvProj is newEnv with the projection runner configured too.
func newEnvProj(t *testing.T, cfg hub.Config, proj projections.Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), cfg: cfg, proj: proj, clientCreds: insecure.NewCredentials()}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// newEnvWith is newEnv over a transport secured with the given
// credentials (nil: plaintext).
func newEnvWith(t *testing.T, cfg hub.Config, serverCreds, clientCreds credentials.TransportCredentials) *env {
	t.Helper()
	if clientCreds == nil {
		clientCreds = insecure.NewCredentials()
	}
	e := &env{t: t, dir: t.TempDir(), cfg: cfg, serverCreds: serverCreds, clientCreds: clientCreds}
	e.start()
	t.Cleanup(e.stop)
	return e
}

// newEnvFrom starts e as newEnv would, with what e sets already (t, dir,
// cfg, daemonCfg, credentials).
func newEnvFrom(e *env) *env {
	e.t.Helper()
	if e.clientCreds == nil {
		e.clientCreds = insecure.NewCredentials()
	}
	e.start()
	e.t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	t := e.t
	t.Helper()
	cfg := e.cfg
	if cfg.AdminTokens == nil && cfg.Admins == nil {
		cfg.AdminTokens = map[string]string{adminToken: "ops-alice"}
	}
	if cfg.ShutdownJitter == 0 {
		cfg.ShutdownJitter = 100 * time.Millisecond
	}
	dc := daemon.Config{Data: e.dir, Listen: "127.0.0.1:0", WSListen: "127.0.0.1:0", Hub: cfg, Projections: e.proj, Creds: e.serverCreds, Logger: cfg.Logger}
	if e.daemonCfg != nil {
		e.daemonCfg(&dc)
	}
	d, err := daemon.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(e.clientCreds))
	if err != nil {
		t.Fatal(err)
	}
	e.d, e.store, e.srv, e.addr, e.ws, e.conn, e.down = d, d.Store(), d.Hub(), d.Addr(), d.WSAddr(), conn, false
	e.admin = hubpb.NewAdminClient(conn)
}

// stop shuts the hub down the way hubd does.
func (e *env) stop() {
	if e.down {
		return
	}
	e.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.d.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	e.conn.Close()
}

func (e *env) restart() {
	e.stop()
	e.start()
}

func adminCtx(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client is one session over its own connection (an abort closes only it).
type client struct {
	t       *testing.T
	conn    *grpc.ClientConn
	stream  hubpb.Hub_ConnectClient
	welcome *hubpb.Welcome
	cancel  context.CancelFunc
}

func (e *env) dial(user, device string) (*client, error) {
	return e.dialHello(&hubpb.Hello{User: user, Device: device})
}

func (e *env) dialHello(h *hubpb.Hello) (*client, error) {
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(e.clientCreds))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	c := &client{t: e.t, conn: conn, cancel: cancel}
	e.t.Cleanup(c.close)
	c.stream, err = hubpb.NewHubClient(conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	// Send reports io.EOF when the server already ended the stream (e.g.
	// it is shutting down); the reason is the status Recv returns.
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: h}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	f, err := c.stream.Recv()
	if err != nil {
		return nil, err
	}
	c.welcome = f.GetWelcome()
	if c.welcome == nil {
		return nil, errors.New("first server frame is not Welcome")
	}
	return c, nil
}

// helloOn opens a session of user on device "d" over conn, which other
// streams share, and returns its stream and Welcome.
func helloOn(t *testing.T, conn *grpc.ClientConn, user string) (hubpb.Hub_ConnectClient, *hubpb.Welcome) {
	t.Helper()
	st, err := hubpb.NewHubClient(conn).Connect(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: "d"}}}); err != nil {
		t.Fatal(err)
	}
	f, err := st.Recv()
	if err != nil || f.GetWelcome() == nil {
		t.Fatalf("welcome of %s: %v %v", user, f, err)
	}
	return st, f.GetWelcome()
}

func (e *env) mustDial(user, device string) *client {
	e.t.Helper()
	c, err := e.dial(user, device)
	if err != nil {
		e.t.Fatalf("connect %s/%s: %v", user, device, err)
	}
	return c
}

func (c *client) close() {
	c.cancel()
	c.conn.Close()
}

// next returns the next non-ping frame, or the stream's final error.
func (c *client) next() (*hubpb.ServerFrame, error) {
	for {
		f, err := c.stream.Recv()
		if err != nil {
			return nil, err
		}
		if f.GetPing() != nil {
			continue
		}
		return f, nil
	}
}

// expectEnd reads until the stream ends and returns the Disconnect frame
// (nil if none came) and the final status.
func (c *client) expectEnd() (*hubpb.Disconnect, *status.Status) {
	c.t.Helper()
	var d *hubpb.Disconnect
	for {
		f, err := c.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return d, status.New(codes.OK, "")
			}
			return d, status.Convert(err)
		}
		if f.GetDisconnect() != nil {
			d = f.GetDisconnect()
		}
	}
}

// events returns every event in the ledger from seq from on.
func (e *env) events(from uint64) []*ledger.Record {
	e.t.Helper()
	var out []*ledger.Record
	if err := e.store.Scan(context.Background(), from, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitEvent waits until an event matching ok is in the ledger after from.
func (e *env) waitEvent(from uint64, what string, ok func(*ledger.Record) bool) *ledger.Record {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range e.events(from) {
			if ok(r) {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("no %s event in the ledger", what)
	return nil
}

// waitEnd waits until session's session_disconnected event is in the
// ledger and applied by the projections, so what the Admin API reads from
// them (GetSession, ListSessions) includes the end. The event is durable
// before it is applied: reading the ledger alone is not enough.
func (e *env) waitEnd(from uint64, session string) *ledger.Record {
	e.t.Helper()
	end := e.waitEvent(from, "session_disconnected of "+session, disconnectOf(session))
	if err := e.d.Projections().WaitApplied(ctxT(e.t), end.Seq); err != nil {
		e.t.Fatal(err)
	}
	return end
}

func isType(typ eventpb.EventType) func(*ledger.Record) bool {
	return func(r *ledger.Record) bool { return r.Event.GetType() == typ }
}

func disconnectOf(session string) func(*ledger.Record) bool {
	return func(r *ledger.Record) bool {
		return r.Event.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED && r.Event.GetSession() == session
	}
}

// types lists the event types after seq from, for exact assertions.
func (e *env) types(from uint64) []eventpb.EventType {
	var out []eventpb.EventType
	for _, r := range e.events(from) {
		out = append(out, r.Event.GetType())
	}
	return out
}

// describe renders a record as one line for exact ledger assertions:
//
//	session_connected user/device session [supersedes a,b] [policy ...]
//	session_reconnected user/device session from prev [supersedes a] [policy ...]
//	notification_sent target user-or-session topic
//	kick_requested user-or-session by actor: reason
//	user_banned user by actor: reason
//	user_unbanned user by actor: reason
//	session_disconnected user/device session cause [cause-event-id] [superseded_by s] by actor: reason
//	connect_rejected user/device code xcount: reason
func describe(r *ledger.Record) string {
	ev := r.Event
	name := strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "EVENT_TYPE_"))
	who := ev.GetUser() + "/" + ev.GetDevice()
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
		c := ev.GetSessionConnected()
		return strings.Join(strings.Fields(fmt.Sprintf("%s %s %s %s %s", name, who, ev.GetSession(), supersedes(c.GetSupersedes()), policy(c.GetPolicy()))), " ")
	case eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		b := ev.GetSessionReconnected()
		return strings.Join(strings.Fields(fmt.Sprintf("%s %s %s from %s %s %s", name, who, ev.GetSession(), b.GetPreviousSession(), supersedes(b.GetSupersedes()), policy(b.GetPolicy()))), " ")
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT:
		n := ev.GetNotificationSent()
		return fmt.Sprintf("%s %s %s%s %s", name, strings.ToLower(strings.TrimPrefix(n.GetTarget().String(), "NOTIFICATION_TARGET_")), ev.GetUser(), ev.GetSession(), n.GetTopic())
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		target := ev.GetUser()
		if ev.GetKickRequested().GetTarget() == eventpb.KickTarget_KICK_TARGET_SESSION {
			target = ev.GetSession()
		}
		return fmt.Sprintf("%s %s by %s: %s", name, target, ev.GetActor(), ev.GetReason())
	case eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		return fmt.Sprintf("%s %s by %s: %s", name, ev.GetUser(), ev.GetActor(), ev.GetReason())
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		d := ev.GetSessionDisconnected()
		line := fmt.Sprintf("%s %s %s %s", name, who, ev.GetSession(), strings.ToLower(strings.TrimPrefix(d.GetCause().String(), "DISCONNECT_CAUSE_")))
		if id := d.GetCauseEventId(); len(id) == 16 {
			line += " " + ulid.ULID(id).String()
		}
		if d.GetSupersededBy() != "" {
			line += " superseded_by " + d.GetSupersededBy()
		}
		return fmt.Sprintf("%s by %s: %s", line, ev.GetActor(), ev.GetReason())
	case eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED:
		c := ev.GetConnectRejected()
		return fmt.Sprintf("%s %s %s x%d: %s", name, who, c.GetCode(), c.GetCount(), ev.GetReason())
	}
	return name
}

// policy renders a connect's login policy when it limits anything.
func policy(p *eventpb.LoginPolicy) string {
	var out []string
	if p.GetOnePerDevice() {
		out = append(out, "one_per_device")
	}
	if n := p.GetMaxPerUser(); n > 0 {
		out = append(out, fmt.Sprintf("max_per_user=%d", n))
	}
	if len(out) == 0 {
		return ""
	}
	return "policy " + strings.Join(out, ",")
}

func supersedes(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return "supersedes " + strings.Join(ids, ",")
}

// expectLedger checks the events from seq from on, one line each as
// describe renders them; a want line ending in "*" matches any line that
// starts with the rest.
func (e *env) expectLedger(from uint64, want ...string) {
	e.t.Helper()
	var got []string
	for _, r := range e.events(from) {
		got = append(got, describe(r))
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		if w, prefix := strings.CutSuffix(want[i], "*"); prefix {
			ok = strings.HasPrefix(got[i], w)
		} else {
			ok = got[i] == want[i]
		}
	}
	if !ok {
		e.t.Fatalf("ledger from seq %d:\n\t%s\nwant:\n\t%s", from, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func equalTypes(a []eventpb.EventType, b ...eventpb.EventType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var ledgerCheck = ledgertest.Check

func projectionsPolicy(maxPerUser int, onePerDevice bool) projections.Policy {
	return projections.Policy{MaxPerUser: maxPerUser, OnePerDevice: onePerDevice}
}
