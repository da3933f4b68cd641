package daemon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testports"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/cluster"
	"github.com/sessionledger/sessionledger/projections"
)

const adminToken = "cluster-test-admin-token-0123"

func adminCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
}

// node is one hubd of an in-process test cluster.
type node struct {
	name  string
	cfg   daemon.Config
	d     *daemon.Daemon
	conn  *grpc.ClientConn
	admin hubpb.AdminClient
}

// startCluster starts n daemons, each with an embedded NATS server, routed
// to each other, and waits until they all serve.
func startCluster(t *testing.T, n int) []*node {
	t.Helper()
	return startClusterWith(t, n, nil)
}

// startClusterWith is startCluster with each node's configuration changed
// by tweak (if not nil) before it starts.
func startClusterWith(t *testing.T, n int, tweak func(*daemon.Config)) []*node {
	t.Helper()
	ports := testports.Ports(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := make([]*node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range nodes {
		nd := &node{name: fmt.Sprintf("node-%c", 'a'+i)}
		nodes[i] = nd
		nd.cfg = daemon.Config{
			Data: t.TempDir(), Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Hub: hub.Config{Node: nd.name, AdminTokens: map[string]string{adminToken: "ops-" + nd.name}, ResumeKey: []byte("cluster-test-resume-key-0123456"),
				ShutdownJitter: 50 * time.Millisecond, ShutdownReconnect: 50 * time.Millisecond, Policy: projections.Policy{OnePerDevice: true}},
			Cluster: &cluster.Config{Replicas: min(n, 3), StartTimeout: 40 * time.Second,
				Embed: &cluster.EmbedConfig{Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes}},
		}
		if tweak != nil {
			tweak(&nd.cfg)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = nd.start()
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.stop(t)
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range nodes {
		nd.dial(t)
	}
	return nodes
}

// start starts the node's daemon.
func (nd *node) start() error {
	d, err := daemon.New(nd.cfg)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		err = d.Start(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", nd.name, err)
	}
	nd.d = d
	return nil
}

func (nd *node) dial(t *testing.T) {
	conn, err := grpc.NewClient(nd.d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	nd.conn, nd.admin = conn, hubpb.NewAdminClient(conn)
}

func (nd *node) stop(t *testing.T) {
	if nd.d == nil {
		return
	}
	if nd.conn != nil {
		nd.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := nd.d.Shutdown(ctx); err != nil {
		t.Errorf("%s shutdown: %v", nd.name, err)
	}
	nd.d = nil
}

// session is a raw client stream.
type session struct {
	stream  hubpb.Hub_ConnectClient
	welcome *hubpb.Welcome
}

func (nd *node) connect(t *testing.T, user, device string) (*session, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	st, err := hubpb.NewHubClient(nd.conn).Connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: device}}}); err != nil {
		return nil, err
	}
	f, err := st.Recv()
	if err != nil {
		return nil, err
	}
	if f.GetWelcome() == nil {
		return nil, errors.New("first frame is not a Welcome")
	}
	return &session{stream: st, welcome: f.GetWelcome()}, nil
}

// end reads frames until the stream ends and returns its Disconnect.
func (s *session) end(t *testing.T) *hubpb.Disconnect {
	t.Helper()
	var d *hubpb.Disconnect
	for {
		f, err := s.stream.Recv()
		if err != nil {
			return d
		}
		if f.GetDisconnect() != nil {
			d = f.GetDisconnect()
		}
	}
}

// TestClusterInProcess: three hubd daemons with embedded NATS servers form
// a cluster. A session on node C kicked through node A's Admin API ends
// with the kick's reason and event id; a ban through node B refuses a
// connect on node C; every node's ledger holds the same records with the
// same head hash, and ClusterStatus says the chains agree.
func TestClusterInProcess(t *testing.T) {
	nodes := startCluster(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	s, err := c.connect(t, "carol", "phone")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.admin.Kick(adminCtx(t), &hubpb.KickRequest{User: "carol", Reason: "kicked from node a", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	if err != nil {
		t.Fatal(err)
	}
	d := s.end(t)
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != rep.GetEventId() || d.GetReason() != "kicked from node a" || d.GetActor() != "ops-node-a" {
		t.Fatalf("carol on node c got %v; want kicked by event %s, reason and actor from node a", d, rep.GetEventId())
	}

	if _, err := b.admin.Ban(adminCtx(t), &hubpb.BanRequest{User: "mallory", Reason: "banned on node b"}); err != nil {
		t.Fatal(err)
	}
	// Node c refuses once it has applied the ban: the Ban call returned
	// when node b applied it; node c follows the same log.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := c.connect(t, "mallory", "laptop")
		if status.Code(err) == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("connect of a user banned through node b, on node c: %v; want PermissionDenied", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Every node holds the same log.
	want := waitSameHead(t, nodes)
	for _, nd := range nodes {
		n, err := nd.d.Store().Verify(context.Background(), 0, 0, nil)
		if err != nil || n != want.Seq {
			t.Errorf("%s: verify %d records, %v; want %d intact", nd.name, n, err, want.Seq)
		}
	}
	rec, err := c.d.Store().Get(rep.GetSeq())
	if err != nil || rec.ID.String() != rep.GetEventId() {
		t.Errorf("node c's record at the kick's seq %d: %v, %v; want the kick %s", rep.GetSeq(), rec, err, rep.GetEventId())
	}
	// A checkpoint signed by one node verifies against another node's log:
	// the replicas share the log id and hold the same tree.
	signed, err := a.d.Signer().SignNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(signed.Note, a.d.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.d.Store().TreeRoot(cp.Size)
	if err != nil || root != cp.Root || cp.Origin != c.d.Store().LogID() {
		t.Errorf("node a's checkpoint (%s, size %d) against node c's log (%s): root %x, %v; want %x", cp.Origin, cp.Size, c.d.Store().LogID(), root, err, cp.Root)
	}
	var st *hubpb.ClusterStatusReply
	deadline = time.Now().Add(10 * time.Second)
	for {
		st, err = b.admin.ClusterStatus(adminCtx(t), &hubpb.ClusterStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.GetNodes()) == 3 && st.GetComparedSeq() == want.Seq || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !st.GetClustered() || len(st.GetNodes()) != 3 || st.GetComparedSeq() != want.Seq || st.GetNodes()[0].GetNode() != "node-b" {
		t.Fatalf("cluster status from node b: %v; want 3 nodes, node b first, compared at seq %d", st, want.Seq)
	}
	for _, n := range st.GetNodes() {
		if n.GetDiffers() || n.GetHashAtCompared() != fmt.Sprintf("%x", want.Hash) || n.GetAddr() == "" {
			t.Errorf("node %s: %v; want the same hash as the others and an address", n.GetNode(), n)
		}
	}
}

// waitSameHead waits until every node's ledger has the same head and
// returns it.
func waitSameHead(t *testing.T, nodes []*node) ledger.Head {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := nodes[0].d.Store().Head()
		same := true
		for _, nd := range nodes[1:] {
			same = same && nd.d.Store().Head() == h
		}
		if same {
			return h
		}
		if time.Now().After(deadline) {
			for _, nd := range nodes {
				t.Logf("%s head %+v", nd.name, nd.d.Store().Head())
			}
			t.Fatal("the nodes' ledgers did not reach the same head")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterRebuildsALostLedger: a node whose ledger file was lost starts
// with the rest of its data directory and rebuilds the ledger from the
// stream: the same records, the same head hash as the others.
func TestClusterRebuildsALostLedger(t *testing.T) {
	nodes := startCluster(t, 3)
	a, c := nodes[0], nodes[2]
	for i := range 20 {
		if _, err := a.admin.Notify(adminCtx(t), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: fmt.Sprint("t", i)}); err != nil {
			t.Fatal(err)
		}
	}
	want := waitSameHead(t, nodes)
	c.stop(t)
	if err := os.Remove(filepath.Join(c.cfg.Data, "ledger.db")); err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	c.dial(t)
	if got := waitSameHead(t, nodes); got.Seq < want.Seq {
		t.Fatalf("head after the rebuild %d; want at least %d", got.Seq, want.Seq)
	}
	for seq := uint64(1); seq <= want.Seq; seq++ {
		ra, _ := a.d.Store().Get(seq)
		rc, err := c.d.Store().Get(seq)
		if err != nil || rc.Hash != ra.Hash || rc.ID != ra.ID {
			t.Fatalf("seq %d on the rebuilt node: %v, %v; want node a's record", seq, rc, err)
		}
	}
}
