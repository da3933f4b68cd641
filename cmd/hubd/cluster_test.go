package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/testports"
	"github.com/sessionledger/sessionledger/ledger"
)

// clusterNode is one hubd process of a test cluster, with what it takes
// to start it again on the same data and ports.
type clusterNode struct {
	name  string
	data  string
	flags []string
	p     *proc
}

// newCluster launches n hubd processes with embedded NATS servers routed
// to each other and waits until every one listens.
//
// The NATS servers' cluster addresses and the nodes' gRPC addresses are
// reserved until the test ends (internal/testports): the routes must be
// known before any server starts, and clients and peers that dial a
// killed node must find nothing there, not another test's server that
// took its port (a node started again comes back on the same ones).
func newCluster(t *testing.T, n int, extra ...string) []*clusterNode {
	t.Helper()
	var routes, listen []string
	for range n {
		routes = append(routes, "nats://"+testports.Addr(t))
		listen = append(listen, testports.Addr(t))
	}
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		name := fmt.Sprintf("node-%c", 'a'+i)
		nodes[i] = &clusterNode{name: name, data: t.TempDir(), flags: []string{"--node", name, "--listen", listen[i], "--embed-nats", "--nats-listen", "127.0.0.1:0",
			"--nats-cluster-listen", strings.TrimPrefix(routes[i], "nats://"), "--nats-routes", strings.Join(routes, ","), "--replicas", strconv.Itoa(min(n, 3))}}
		nodes[i].flags = append(nodes[i].flags, extra...)
	}
	for _, nd := range nodes {
		nd.launch(t)
	}
	for _, nd := range nodes {
		nd.waitListening(t)
	}
	return nodes
}

func (nd *clusterNode) launch(t *testing.T) { nd.p = launch(t, nd.data, nd.flags...) }

// waitListening waits until the node serves (it catches up with the
// cluster's log first).
func (nd *clusterNode) waitListening(t *testing.T) {
	t.Helper()
	p := nd.p
	deadline := time.After(90 * time.Second)
	for p.grpc == "" {
		select {
		case <-p.exited:
			t.Fatalf("%s exited with %d before listening:\n%s", nd.name, p.code, p.output())
		case <-deadline:
			t.Fatalf("%s did not listen within 90s:\n%s", nd.name, p.output())
		case <-time.After(50 * time.Millisecond):
			p.mu.Lock()
			p.grpc, p.metrics = listening(p.logs.String())
			p.mu.Unlock()
		}
	}
}

// state says whether the node's hubd still runs, with the end of its log:
// for a failure message.
func (nd *clusterNode) state() string {
	logs := nd.p.output()
	if lines := strings.Split(logs, "\n"); len(lines) > 40 {
		logs = strings.Join(lines[len(lines)-40:], "\n")
	}
	select {
	case <-nd.p.exited:
		return fmt.Sprintf("%s exited with %d; the end of its log:\n%s", nd.name, nd.p.code, logs)
	default:
		return fmt.Sprintf("%s runs; the end of its log:\n%s", nd.name, logs)
	}
}

func (nd *clusterNode) sigkill(t *testing.T) {
	t.Helper()
	if err := nd.p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-nd.p.exited
}

func (nd *clusterNode) admin(t *testing.T) (hubpb.AdminClient, context.Context) {
	t.Helper()
	tok, err := hubapi.FirstAdminToken(filepath.Join(nd.data, hubapi.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return hubpb.NewAdminClient(dialConn(t, nd.p.grpc)), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// acked is an event an Admin call acknowledged.
type acked struct {
	seq uint64
	id  string
}

// load notifies through each of nodes from its own goroutine until stop
// closes, and returns every acknowledged event. A call that fails (its
// node was killed, or the log lost its quorum) is not acknowledged.
func load(t *testing.T, nodes []*clusterNode, stop <-chan struct{}) <-chan []acked {
	out := make(chan []acked, 1)
	var mu sync.Mutex
	var all []acked
	var wg sync.WaitGroup
	for _, nd := range nodes {
		admin, ctx := nd.admin(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				call, cancel := context.WithTimeout(ctx, 3*time.Second)
				rep, err := admin.Notify(call, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "u-" + nd.name, Topic: "t"})
				cancel()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				mu.Lock()
				all = append(all, acked{rep.GetSeq(), rep.GetEventId()})
				mu.Unlock()
			}
		}()
	}
	go func() {
		wg.Wait()
		out <- all
	}()
	return out
}

// waitConverged waits until every node's ledger reached the same head: a
// replica may lag a little behind the one that acknowledged an event (its
// consumer was on a server that was killed: it subscribes again within
// seconds), and a node stopped meanwhile keeps a shorter ledger until it
// next starts.
func waitConverged(t *testing.T, nodes []*clusterNode) {
	t.Helper()
	heads := make([]uint64, len(nodes))
	var lastErr error
	same := func() bool {
		for i, nd := range nodes {
			admin, ctx := nd.admin(t)
			res, err := admin.ClusterStatus(ctx, &hubpb.ClusterStatusRequest{})
			if err != nil {
				lastErr = fmt.Errorf("%s: %w", nd.name, err)
				return false
			}
			heads[i] = res.GetNodes()[0].GetHeadSeq()
		}
		for _, h := range heads {
			if h != heads[0] {
				return false
			}
		}
		return true
	}
	// 60 s: a replicator whose consumer was on a killed server subscribes
	// again after 1–2 s without progress, more than once if the stream's
	// leader moved meanwhile.
	for deadline := time.Now().Add(60 * time.Second); !same(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 60 s for every node's ledger at the same head; heads %v (last error: %v)", heads, lastErr)
		}
	}
}

// checkLedgers stops nothing: it opens each node's ledger (its hubd must
// have exited) and checks that all hold the same records, that every
// acknowledged event is there at its seq, and that no message was stored
// twice.
func checkLedgers(t *testing.T, nodes []*clusterNode, acks []acked) {
	t.Helper()
	var head ledger.Head
	for i, nd := range nodes {
		s, err := ledger.Open(filepath.Join(nd.data, "ledger.db"), &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("%s: %v", nd.name, err)
		}
		if n, err := s.Verify(context.Background(), 0, 0, nil); err != nil || n != s.Head().Seq {
			t.Errorf("%s: verify: %d records, %v", nd.name, n, err)
		}
		h := s.Head()
		if i == 0 {
			head = h
		} else if h != head {
			t.Errorf("%s head %d %x; %s's is %d %x", nd.name, h.Seq, h.Hash[:8], nodes[0].name, head.Seq, head.Hash[:8])
			for _, line := range strings.Split(nd.p.output(), "\n") {
				if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) {
					t.Logf("%s: %s", nd.name, line)
				}
			}
		}
		seen := map[string]uint64{}
		err = s.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
			if prev, dup := seen[r.UUID]; dup {
				t.Errorf("%s: message %s stored at seq %d and %d", nd.name, r.UUID, prev, r.Seq)
			}
			seen[r.UUID] = r.Seq
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range acks {
			r, err := s.Get(a.seq)
			if err != nil || r.ID.String() != a.id {
				t.Errorf("%s: acknowledged event %s at seq %d: got %v, %v", nd.name, a.id, a.seq, r, err)
			}
		}
		s.Close()
	}
}

// TestClusterSurvivesAKilledNode: three hubd processes; one is SIGKILLed
// while appends run through the others: they keep serving, every
// acknowledged event is in every ledger, and the killed node catches up
// when it is started again.
func TestClusterSurvivesAKilledNode(t *testing.T) {
	nodes := newCluster(t, 3)
	stop := make(chan struct{})
	got := load(t, nodes[:2], stop)
	time.Sleep(time.Second)
	nodes[2].sigkill(t)
	time.Sleep(time.Second)
	close(stop)
	acks := <-got
	// After the kill the other two still append (a new stream leader may
	// be elected first: the publish tries again meanwhile).
	admin, ctx := nodes[0].admin(t)
	after, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "after the kill"})
	if err != nil {
		t.Fatalf("notify with one node of three killed: %v; want it recorded", err)
	}
	acks = append(acks, acked{after.GetSeq(), after.GetEventId()})
	if len(acks) < 10 {
		t.Fatalf("only %d events acknowledged under load", len(acks))
	}
	nodes[2].launch(t)
	nodes[2].waitListening(t)
	waitConverged(t, nodes)
	for _, nd := range nodes {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Errorf("%s exited %d after SIGTERM:\n%s", nd.name, code, nd.p.output())
		}
	}
	checkLedgers(t, nodes, acks)
}

// TestClusterFailsClosedWithoutQuorum: with two of three nodes (and their
// NATS servers) gone, the survivor refuses admin actions and connects with
// Unavailable and reports NOT_SERVING, recording nothing (not later
// either: once the quorum is back, neither ledger holds the refused
// notify or connect); with one back, it serves again on its own.
func TestClusterFailsClosedWithoutQuorum(t *testing.T) {
	nodes := newCluster(t, 3)
	a := nodes[0]
	nodes[1].sigkill(t)
	nodes[2].sigkill(t)
	admin, ctx := a.admin(t)
	// At once, before the stream's leader can tell (it counts a replica up
	// for 5 s after it last heard it): the survivor's NATS server lost its
	// routes as the killed processes' sockets closed, so the survivor
	// refuses without publishing, a plain Unavailable, not an "outcome
	// unknown" whose event a leader might still commit. (The pause lets
	// the survivor's server read the closed sockets, with room for a
	// loaded machine; it is well inside the leader's 5 s.)
	time.Sleep(time.Second)
	_, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "no quorum"})
	if _, unknown := hubapi.OutcomeUnknown(err); status.Code(err) != codes.Unavailable || unknown || !strings.Contains(status.Convert(err).Message(), "routed to") {
		t.Fatalf("notify just after two of three nodes died: %v; want Unavailable, refused before publishing for want of routes (not outcome unknown)", err)
	}
	health := healthpb.NewHealthClient(dialConn(t, a.p.grpc))
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health with no quorum: %v, %v; want NOT_SERVING", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "no quorum"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("notify with no quorum: %v; want Unavailable", err)
	}
	st, err := hubpb.NewHubClient(dialConn(t, a.p.grpc)).Connect(ctx)
	if err == nil {
		_ = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "nq", Device: "d"}}})
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("connect with no quorum: %v; want Unavailable", err)
	}

	nodes[1].launch(t)
	nodes[1].waitListening(t)
	// A fresh context: the first one's 30 s may be spent by now (a loaded
	// machine takes long to restart a node and elect leaders).
	admin, ctx = a.admin(t)
	deadline = time.Now().Add(30 * time.Second)
	for {
		call, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := admin.Notify(call, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "quorum back"})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notify after the quorum came back: %v; want it recorded\n%s", err, a.state())
		}
		time.Sleep(200 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && res.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health after the quorum came back: %v, %v; want SERVING", res, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitConverged(t, nodes[:2])
	for _, nd := range nodes[:2] {
		nd.p.signal(syscall.SIGTERM)
	}
	checkLedgers(t, nodes[:2], nil)
	// Nothing of the refused notify or connect was recorded later, once
	// the quorum was back (a publish that failed must not land after
	// all); the notify that succeeded is there, so the scan reads them.
	for _, nd := range nodes[:2] {
		back := 0
		for _, r := range ledgerRecords(t, nd) {
			switch ev := r.Event; {
			case ev.GetNotificationSent().GetTopic() == "no quorum":
				t.Errorf("%s: got the notify refused without quorum recorded at seq %d; want no record of it", nd.name, r.Seq)
			case ev.GetUser() == "nq":
				t.Errorf("%s: got %v of nq, whose connect was refused without quorum, at seq %d; want no record of it", nd.name, ev.GetType(), r.Seq)
			case ev.GetNotificationSent().GetTopic() == "quorum back":
				back++
			}
		}
		if back == 0 {
			t.Errorf("%s: got no record of the notify after the quorum came back; want it", nd.name)
		}
	}
}

// ledgerRecords returns the records of nd's ledger (its hubd must have
// exited).
func ledgerRecords(t *testing.T, nd *clusterNode) []*ledger.Record {
	t.Helper()
	s, err := ledger.Open(filepath.Join(nd.data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("%s: %v", nd.name, err)
	}
	defer s.Close()
	var out []*ledger.Record
	if err := s.Scan(context.Background(), 1, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("%s: %v", nd.name, err)
	}
	return out
}

// TestClusterKillRounds: over rounds, a random node is SIGKILLed while
// appends run through all nodes, and started again; at the end no node
// lost or duplicated an acknowledged event, and all chains agree.
func TestClusterKillRounds(t *testing.T) {
	rounds := 6
	if testing.Short() {
		rounds = 2
	}
	nodes := newCluster(t, 3)
	var acks []acked
	for round := range rounds {
		victim := nodes[rand.IntN(len(nodes))]
		stop := make(chan struct{})
		got := load(t, nodes, stop)
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		victim.sigkill(t)
		time.Sleep(500 * time.Millisecond)
		close(stop)
		acks = append(acks, <-got...)
		victim.launch(t)
		victim.waitListening(t)
		t.Logf("round %d: killed %s; %d events acknowledged so far", round, victim.name, len(acks))
	}
	waitConverged(t, nodes)
	for _, nd := range nodes {
		nd.p.signal(syscall.SIGTERM)
	}
	checkLedgers(t, nodes, acks)
}
