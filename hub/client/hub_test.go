package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const adminToken = "client-test-admin-token-0123"

// testHub is a real hub on a real ledger, served over gRPC on 127.0.0.1,
// for the tests and the examples.
type testHub struct {
	dir   string
	addr  string
	cfg   hub.Config
	store *ledger.Store
	srv   *hub.Server
	g     *grpc.Server
	conn  *grpc.ClientConn
	admin hubpb.AdminClient
	acks  *ackLog
	down  bool
}

// ackLog records the Ack frames the server received.
type ackLog struct {
	mu   sync.Mutex
	seqs []uint64
}

func (a *ackLog) received() []uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]uint64(nil), a.seqs...)
}

// interceptor sees every client frame before the hub does.
func (a *ackLog) interceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, ackStream{ss, a})
}

type ackStream struct {
	grpc.ServerStream
	log *ackLog
}

func (s ackStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if f, ok := m.(*hubpb.ClientFrame); ok && err == nil && f.GetAck() != nil {
		s.log.mu.Lock()
		s.log.seqs = append(s.log.seqs, f.GetAck().GetSeq())
		s.log.mu.Unlock()
	}
	return err
}

// startHub starts a hub with its ledger in dir, listening on addr
// ("127.0.0.1:0" for any port).
func startHub(dir, addr string, cfg hub.Config) (*testHub, error) {
	if cfg.AdminTokens == nil {
		cfg.AdminTokens = map[string]string{adminToken: "ops"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownJitter == 0 {
		cfg.ShutdownJitter = 50 * time.Millisecond
	}
	if cfg.ResumeKey == nil {
		cfg.ResumeKey = []byte("client-test-resume-key-0123456789") // survives restarts
	}
	store, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := hub.New(ctx, store, cfg)
	if err != nil {
		store.Close()
		return nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		srv.Shutdown(ctx)
		store.Close()
		return nil, err
	}
	acks := &ackLog{}
	g := grpc.NewServer(append(srv.ServerOptions(), grpc.ChainStreamInterceptor(acks.interceptor))...)
	srv.Register(g)
	go srv.Serve(g, hub.NewListener(l))
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &testHub{dir: dir, addr: l.Addr().String(), cfg: cfg, store: store, srv: srv, g: g, conn: conn, admin: hubpb.NewAdminClient(conn), acks: acks}, nil
}

// stop shuts the hub down the way hubd does (sessions are told
// server_shutdown).
func (h *testHub) stop() error {
	if h.down {
		return nil
	}
	h.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.srv.Shutdown(ctx)
	// As hubd: GracefulStop lets the handlers that Shutdown ended send
	// their Disconnect frame and final status (Stop could cut them and
	// leave a client with EOF and no advice), bounded in case a stream
	// does not end.
	stopped := make(chan struct{})
	go func() { h.g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		h.g.Stop()
		<-stopped
	}
	h.conn.Close()
	return errors.Join(err, h.store.Close())
}

// newHub starts a hub for t and stops it at the end of the test.
func newHub(t *testing.T, cfg hub.Config) *testHub {
	t.Helper()
	h, err := startHub(t.TempDir(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("stop hub: %v", err)
		}
	})
	return h
}

// restart stops the hub and starts it again on the same address and
// ledger.
func (h *testHub) restart(t *testing.T) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	nh, err := startHub(h.dir, h.addr, h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	*h = *nh
}

// exampleHub starts a hub for an Example, in a temporary directory that
// close removes.
func exampleHub() (h *testHub, close func()) {
	dir, err := os.MkdirTemp("", "client-example-")
	if err != nil {
		panic(err)
	}
	h, err = startHub(dir, "127.0.0.1:0", hub.Config{})
	if err != nil {
		panic(err)
	}
	return h, func() {
		if err := h.stop(); err != nil {
			panic(err)
		}
		os.RemoveAll(dir)
	}
}

func adminCtx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken), cancel
}

func (h *testHub) notify(user, topic, payload string) (*hubpb.ActionReply, error) {
	ctx, cancel := adminCtx()
	defer cancel()
	return h.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: user, Topic: topic, Payload: []byte(payload)})
}

func (h *testHub) kick(req *hubpb.KickRequest) (*hubpb.ActionReply, error) {
	ctx, cancel := adminCtx()
	defer cancel()
	return h.admin.Kick(ctx, req)
}

func (h *testHub) ban(req *hubpb.BanRequest) (*hubpb.ActionReply, error) {
	ctx, cancel := adminCtx()
	defer cancel()
	return h.admin.Ban(ctx, req)
}

// events returns the ledger's events from seq from on.
func (h *testHub) events(t *testing.T, from uint64) []*ledger.Record {
	t.Helper()
	var out []*ledger.Record
	if err := h.store.Scan(context.Background(), from, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitEvent waits (at most 10s) for an event after from that ok accepts.
func (h *testHub) waitEvent(t *testing.T, from uint64, what string, ok func(*ledger.Record) bool) *ledger.Record {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range h.events(t, from) {
			if ok(r) {
				return r
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no %s event in the ledger", what)
	return nil
}

// count counts events of typ after from.
func (h *testHub) count(t *testing.T, from uint64, typ eventpb.EventType) int {
	n := 0
	for _, r := range h.events(t, from) {
		if r.Event.GetType() == typ {
			n++
		}
	}
	return n
}

func isType(typ eventpb.EventType) func(*ledger.Record) bool {
	return func(r *ledger.Record) bool { return r.Event.GetType() == typ }
}

func endOf(session string) func(*ledger.Record) bool {
	return func(r *ledger.Record) bool {
		return r.Event.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED && r.Event.GetSession() == session
	}
}
