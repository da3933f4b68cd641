package hub_test

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
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
	path  string
	store *ledger.Store
	srv   *hub.Server
	grpc  *grpc.Server
	addr  string
	conn  *grpc.ClientConn
	admin hubpb.AdminClient
	cfg   hub.Config
	down  bool
}

func newEnv(t *testing.T, cfg hub.Config) *env {
	t.Helper()
	e := &env{t: t, path: filepath.Join(t.TempDir(), "ledger.db"), cfg: cfg}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	t := e.t
	t.Helper()
	store, err := ledger.Open(e.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	if cfg.AdminTokens == nil {
		cfg.AdminTokens = map[string]string{adminToken: "ops-alice"}
	}
	if cfg.ShutdownJitter == 0 {
		cfg.ShutdownJitter = 100 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := hub.New(ctx, store, cfg)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	g := grpc.NewServer(append(srv.ServerOptions(), grpc.MaxRecvMsgSize(64<<10))...)
	srv.Register(g)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(g, hub.NewListener(l))
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	e.store, e.srv, e.grpc, e.addr, e.conn, e.down = store, srv, g, l.Addr().String(), conn, false
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
	if err := e.srv.Shutdown(ctx); err != nil {
		e.t.Errorf("shutdown: %v", err)
	}
	e.grpc.Stop()
	e.conn.Close()
	if err := e.store.Close(); err != nil {
		e.t.Errorf("close ledger: %v", err)
	}
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
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
	if err := e.srv.Projections().WaitApplied(ctxT(e.t), end.Seq); err != nil {
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
