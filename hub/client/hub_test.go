package client_test

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testports"
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
	d     *daemon.Daemon
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
	acks := &ackLog{}
	d, err := daemon.New(daemon.Config{Data: dir, Listen: addr, Hub: cfg, Logger: cfg.Logger,
		GRPCOptions: []grpc.ServerOption{grpc.ChainStreamInterceptor(acks.interceptor)}})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &testHub{dir: dir, addr: d.Addr(), cfg: cfg, store: d.Store(), d: d, conn: conn, admin: hubpb.NewAdminClient(conn), acks: acks}, nil
}

// stop shuts the hub down the way hubd does (sessions are told
// server_shutdown, and get their Disconnect frame and final status).
func (h *testHub) stop() error {
	if h.down {
		return nil
	}
	h.down = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h.d.Shutdown(ctx)
	h.conn.Close()
	return err
}

// newHub starts a hub for t and stops it at the end of the test. Its
// address is reserved until then (internal/testports): restart starts the
// hub again there, and clients that dial it while the hub is down must
// find nothing, not another test's server that took the port.
func newHub(t *testing.T, cfg hub.Config) *testHub {
	t.Helper()
	h, err := startHub(t.TempDir(), testports.Addr(t), cfg)
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
