package main

// Cluster mode: the nodes, where the sessions landed, and a node's death.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/cluster"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// ClusterResult is what cluster mode adds to the Result.
type ClusterResult struct {
	Nodes int `json:"nodes"`
	// Started: hubbench started the nodes (--cluster); false with --addrs.
	Started bool `json:"started"`
	// Names and Addrs of the nodes; admin calls go through the first.
	Names    []string `json:"names,omitempty"`
	Addrs    []string `json:"addrs"`
	Replicas int      `json:"replicas,omitempty"`
	// The nodes' --cluster-heartbeat and --lost-after (with --cluster).
	HeartbeatMs float64 `json:"cluster_heartbeat_ms,omitempty"`
	LostAfterMs float64 `json:"lost_after_ms,omitempty"`
	// SessionsPerNode is where the clients were welcomed after connecting
	// (in Addrs order); KicksPerNode the nodes that held the kicked
	// sessions (every kick went through the first node to another one).
	SessionsPerNode []int `json:"sessions_per_node"`
	KicksPerNode    []int `json:"kicks_per_node"`
	// Kill is the --kill-node phase.
	Kill *KillResult `json:"kill,omitempty"`
}

// KillResult is what happened after the last node was SIGKILLed.
type KillResult struct {
	Node string `json:"node"`
	Addr string `json:"addr"`
	// Sessions: the live sessions the first node's ListSessions showed on
	// the killed node just before; Clients: the bench clients on it.
	Sessions int `json:"sessions"`
	Clients  int `json:"clients"`
	// FirstEndedSec and AllLostSec: from the SIGKILL until the end of the
	// first, and of the last, of those sessions was in the first node's
	// log (followed through its Audit service, as it is committed there);
	// its ListSessions then shows none of them live.
	FirstEndedSec float64 `json:"first_ended_seconds"`
	AllLostSec    float64 `json:"all_lost_seconds"`
	// TargetSec is --lost-after + 1 s (3 heartbeats + 1 s by default).
	TargetSec float64 `json:"target_seconds"`
	// The ends of the killed node's sessions recorded since the kill, read
	// back from the first node's log: by cause, and by actor (a survivor
	// records "node:" and its name).
	EndsByCause map[string]int `json:"ends_by_cause"`
	EndsByActor map[string]int `json:"ends_by_actor"`
	// SurvivorsLost counts, by node, the sessions of the nodes that were
	// NOT killed whose end was recorded with cause lost since the kill:
	// live sessions wrongly declared lost (their clients reconnect).
	SurvivorsLost map[string]int `json:"survivors_sessions_recorded_lost"`
	// Moved: the killed node's clients welcomed on another node since
	// (Resumed of them resumed their session there); the times are from
	// the SIGKILL.
	Moved          int     `json:"moved"`
	Resumed        int     `json:"resumed"`
	MovedP50Sec    float64 `json:"moved_p50_seconds"`
	MovedP90Sec    float64 `json:"moved_p90_seconds"`
	AllMovedSec    float64 `json:"all_moved_seconds"`
	MovedPerNode   []int   `json:"moved_per_node"`
	FailedAttempts int64   `json:"failed_attempts"`
	// Where JetStream had things just before the kill and after, as the
	// first node's NATS server reports them: the leaders of the log's
	// stream and of the node-state bucket (hubctl cluster's), and (before)
	// the server hosting each replica's consumer of the log (R1: a node
	// whose consumer was on the killed server stops replicating until it
	// subscribes again, and its own appends wait for its replica).
	Before Placement `json:"before"`
	After  Placement `json:"after"`
	// Warnings are the survivors' WARN and ERROR log lines after the kill,
	// counted by node and message (but the embedded servers' failed route
	// connects to the killed one).
	Warnings map[string]int `json:"survivor_warnings"`
}

// Placement is where JetStream keeps the cluster's log and node states.
type Placement struct {
	StreamLeader string         `json:"stream_leader"`
	NodesLeader  string         `json:"node_state_bucket_leader"`
	Consumers    map[string]int `json:"stream_consumers_per_server"`
	Err          string         `json:"error,omitempty"`
}

// maxClusterNodes bounds --cluster: the nodes are named node-a to node-z.
const maxClusterNodes = 26

// startCluster starts o.cluster hubd nodes with embedded NATS servers
// routed to each other (as cmd/hubd's cluster tests do), each with its
// data in a subdirectory of data, waits until every one listens, and
// reads the cluster's admin token.
func (b *bench) startCluster(data string) error {
	n := b.o.cluster
	var addrs, routes, clients []string
	for range n {
		var a [3]string
		for j := range a {
			var err error
			if a[j], err = b.reserveAddr(); err != nil {
				return err
			}
		}
		addrs, routes, clients = append(addrs, a[0]), append(routes, "nats://"+a[1]), append(clients, a[2])
	}
	replicas := min(n, 3)
	cr := &ClusterResult{Nodes: n, Started: true, Addrs: addrs, Replicas: replicas,
		HeartbeatMs: ms(b.o.clusterHeartbeat), LostAfterMs: ms(b.o.effectiveLostAfter())}
	b.res.Cluster = cr
	for i := range n {
		name := fmt.Sprintf("node-%c", 'a'+i)
		dir := filepath.Join(data, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		flags := []string{"--node", name, "--embed-nats", "--nats-listen", clients[i],
			"--nats-cluster-listen", strings.TrimPrefix(routes[i], "nats://"), "--nats-routes", strings.Join(routes, ","),
			"--replicas", strconv.Itoa(replicas), "--cluster-heartbeat", b.o.clusterHeartbeat.String()}
		if b.o.lostAfter > 0 {
			flags = append(flags, "--lost-after", b.o.lostAfter.String())
		}
		b.nodes = append(b.nodes, &node{name: name, data: dir, listen: addrs[i], nats: "nats://" + clients[i], flags: flags})
		cr.Names = append(cr.Names, name)
	}
	t := time.Now()
	for _, nd := range b.nodes {
		if err := b.launch(nd); err != nil {
			return err
		}
	}
	// They wait for each other to form the JetStream cluster, then
	// create (or catch up with) the stream.
	for _, nd := range b.nodes {
		if err := b.waitListening(nd, 120*time.Second); err != nil {
			return err
		}
	}
	b.printf("cluster: %d nodes listening after %.1fs (%s); stream replicas %d, --cluster-heartbeat %s, --lost-after %s",
		n, time.Since(t).Seconds(), b.nodeList(), replicas, b.o.clusterHeartbeat, b.o.effectiveLostAfter())
	// Every node keeps the cluster's admin token file.
	for i, nd := range b.nodes {
		tok, err := hubapi.FirstAdminToken(filepath.Join(nd.data, hubapi.AdminTokenFile))
		if err != nil {
			return err
		}
		if i == 0 {
			b.token = tok
		} else if tok != b.token {
			return fmt.Errorf("%s's admin token differs from %s's: the nodes do not share the cluster's token file", nd.name, b.nodes[0].name)
		}
	}
	return b.dialAdmins()
}

// useNodes takes the running nodes of --addrs and the token of
// --token-file.
func (b *bench) useNodes() error {
	tok, err := hubapi.FirstAdminToken(b.o.tokenFile)
	if err != nil {
		return err
	}
	b.token = tok
	for _, a := range b.o.addrs {
		b.nodes = append(b.nodes, &node{listen: a})
	}
	b.res.Cluster = &ClusterResult{Nodes: len(b.nodes), Addrs: b.o.addrs}
	return b.dialAdmins()
}

func (b *bench) nodeList() string {
	var s []string
	for _, n := range b.nodes {
		s = append(s, n.label()+" "+n.listen)
	}
	return strings.Join(s, ", ")
}

// dialAdmins opens a connection for the Admin API to every node and checks
// that each answers with the token.
func (b *bench) dialAdmins() error {
	for _, n := range b.nodes {
		c, err := grpc.NewClient(n.listen, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			return err
		}
		n.conn, n.admin = c, hubpb.NewAdminClient(c)
		ctx, cancel := b.adminCtx(30 * time.Second)
		_, err = n.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{User: "hubbench-nobody"}, grpc.WaitForReady(true))
		cancel()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.label(), err)
		}
	}
	return nil
}

// nodeIndex returns the index of the node at addr, or -1.
func (b *bench) nodeIndex(addr string) int {
	return slices.IndexFunc(b.nodes, func(n *node) bool { return n.listen == addr })
}

// rotated is the node list session i dials: from node i%N on, so it lands
// there and knows the others to move to.
func (b *bench) rotated(i int) string {
	var a []string
	for j := range b.nodes {
		a = append(a, b.nodes[(i+j)%len(b.nodes)].listen)
	}
	return strings.Join(a, ",")
}

// spread counts where the clients were welcomed.
func (b *bench) spread() {
	per := make([]int, len(b.nodes))
	for _, s := range b.sessions {
		if i := b.nodeIndex(s.node()); i >= 0 {
			per[i]++
		}
	}
	b.res.Cluster.SessionsPerNode = per
	b.printf("cluster: sessions per node %v (%s)", per, b.nodeList())
}

// sessionsOn returns the ids of the live sessions the log, as n applied
// it, shows on the node named nodeName: every page of them.
func (b *bench) sessionsOn(n *node, nodeName string) (map[string]bool, error) {
	return b.listPages(n, nodeName, maxListPage)
}

// maxListPage is the largest page ListSessions gives.
const maxListPage = 5000

// listPages is sessionsOn reading pageSize sessions a call.
func (b *bench) listPages(n *node, nodeName string, pageSize uint32) (map[string]bool, error) {
	ids := map[string]bool{}
	token := ""
	for {
		ctx, cancel := b.adminCtx(5 * time.Second)
		rep, err := n.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{Node: nodeName, PageSize: pageSize, PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		for _, s := range rep.GetSessions() {
			ids[s.GetSessionId()] = true
		}
		if token = rep.GetNextPageToken(); token == "" {
			return ids, nil
		}
	}
}

// noneListed waits, at most d, until n's ListSessions shows no live
// session on the node named nodeName.
func (b *bench) noneListed(n *node, nodeName string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		ids, err := b.sessionsOn(n, nodeName)
		if err == nil && len(ids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill: %s's log holds the end of every session of %s, but its ListSessions still shows %d of them live (%v)", n.label(), nodeName, len(ids), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// watchEnds follows n's log through its Audit service (Events, follow)
// from after seq head and calls first, then all, with the moment the end
// of the first, then of the last, of the sessions ids was in it. It
// returns when all were, or with an error when ctx ends first.
//
// It follows rather than polls: polling ListSessions every few
// milliseconds for the dead node's thousand sessions kept the survivor
// that records their ends busy serialising the list, and so slowed what
// it measured.
func (b *bench) watchEnds(ctx context.Context, n *node, nodeName string, ids map[string]bool, head uint64, since time.Time, first, all func(time.Time)) error {
	if len(ids) == 0 {
		now := time.Now()
		first(now)
		all(now)
		return nil
	}
	ac, err := audit.NewClient(n.listen, b.token)
	if err != nil {
		return err
	}
	defer ac.Close()
	left := maps.Clone(ids)
	errAll := errors.New("all ended")
	// Event times are the stream's, on this machine's clock: the window
	// only saves reading the whole log; the seq decides.
	err = ac.Events(ctx, audit.Filter{Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED}, Since: since.Add(-time.Minute)}, true,
		func(r *ledger.Record) error {
			if r.Seq <= head || !left[r.Event.GetSession()] {
				return nil
			}
			now := time.Now()
			if len(left) == len(ids) {
				first(now)
			}
			delete(left, r.Event.GetSession())
			if len(left) == 0 {
				all(now)
				return errAll
			}
			return nil
		})
	if errors.Is(err, errAll) {
		return nil
	}
	if err == nil {
		err = ctx.Err()
	}
	return fmt.Errorf("kill: %d of %s's %d sessions still had no end in %s's log %s after the SIGKILL: %v",
		len(left), nodeName, len(ids), n.label(), time.Since(since).Round(time.Millisecond), err)
}

// killStats follows the killed node's clients as they are welcomed
// elsewhere.
type killStats struct {
	on      atomic.Bool
	mu      sync.Mutex
	from    string // the killed node's address
	start   time.Time
	waiting map[*sess]bool
	moved   []time.Duration
	to      map[string]int
	resumed int
	all     chan struct{} // closed when no client is waiting
}

func (k *killStats) begin(from string, clients []*sess) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.from, k.waiting, k.to, k.all = from, map[*sess]bool{}, map[string]int{}, make(chan struct{})
	for _, s := range clients {
		k.waiting[s] = true
	}
	if len(clients) == 0 {
		close(k.all)
	}
	k.start = time.Now()
	k.on.Store(true)
}

// connected sees every welcome while the kill phase runs.
func (k *killStats) connected(s *sess, cs client.Session, t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.waiting[s] || cs.Addr == k.from {
		return
	}
	delete(k.waiting, s)
	k.moved = append(k.moved, t.Sub(k.start))
	k.to[cs.Addr]++
	if cs.ResumedFrom != "" {
		k.resumed++
	}
	if len(k.waiting) == 0 {
		close(k.all)
	}
}

// killNode SIGKILLs the last node and times (a) until the first node's log
// holds the end of every session it showed live there just before — the
// survivors recorded them lost — and (b) until each of its clients was
// welcomed on another node; then it reads the recorded ends back from the
// first node's log.
func (b *bench) killNode() error {
	if err := b.waitAllLive("before the kill", time.Minute); err != nil {
		return err
	}
	victim, survivor := b.nodes[len(b.nodes)-1], b.nodes[0]
	k := &KillResult{Node: victim.name, Addr: victim.listen, TargetSec: (b.o.effectiveLostAfter() + time.Second).Seconds()}
	b.res.Cluster.Kill = k
	var on []*sess
	for _, s := range b.sessions {
		if s.node() == victim.listen {
			on = append(on, s)
		}
	}
	k.Clients = len(on)
	headBefore := b.headSeq()
	ids, err := b.sessionsOn(survivor, victim.name)
	if err != nil {
		return fmt.Errorf("kill: list %s's sessions on %s: %w", victim.name, survivor.name, err)
	}
	k.Sessions = len(ids)
	k.Before = b.placement(survivor, true)
	failed := b.failedAttempts.Load()
	b.kill.begin(victim.listen, on)
	defer b.kill.on.Store(false)
	t0 := b.kill.start
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	select {
	case <-victim.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("kill: %s did not exit within 10s of SIGKILL", victim.name)
	}
	b.printf("kill: SIGKILLed %s (%d sessions in the log, %d bench clients on it)", victim.name, k.Sessions, k.Clients)

	// (a) in the background, (b) here.
	deadline := t0.Add(b.o.effectiveLostAfter() + 60*time.Second)
	lostErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		defer cancel()
		lostErr <- b.watchEnds(ctx, survivor, victim.name, ids, headBefore, t0,
			func(t time.Time) { k.FirstEndedSec = t.Sub(t0).Seconds() },
			func(t time.Time) { k.AllLostSec = t.Sub(t0).Seconds() })
	}()
	var movedErr error
	select {
	case <-b.kill.all:
	case <-time.After(time.Until(deadline)):
		movedErr = errors.New("kill: not every client of the killed node was welcomed on another node in time")
	}
	b.kill.mu.Lock()
	moved := slices.Clone(b.kill.moved)
	k.Moved, k.Resumed = len(moved), b.kill.resumed
	k.MovedPerNode = make([]int, len(b.nodes))
	for addr, c := range b.kill.to {
		if i := b.nodeIndex(addr); i >= 0 {
			k.MovedPerNode[i] = c
		}
	}
	b.kill.mu.Unlock()
	if len(moved) > 0 {
		k.MovedP50Sec, k.MovedP90Sec, k.AllMovedSec = pct(moved, 50)/1000, pct(moved, 90)/1000, pct(moved, 100)/1000
	}
	k.FailedAttempts = b.failedAttempts.Load() - failed
	if err := errors.Join(<-lostErr, movedErr); err != nil {
		return err
	}
	// The log as the survivor applied it agrees: none of them live.
	if err := b.noneListed(survivor, victim.name, 5*time.Second); err != nil {
		return err
	}
	if err := b.endsSince(survivor, victim.name, headBefore, t0, k); err != nil {
		return err
	}
	// The warnings first: asking for the consumers' info makes a server
	// warn that the killed one did not answer.
	k.Warnings = map[string]int{}
	for _, n := range b.nodes[:len(b.nodes)-1] {
		for msg, c := range logWarnings(n.log, t0) {
			k.Warnings[n.label()+": "+msg] += c
		}
	}
	// Listing the consumers would wait for the killed server's.
	k.After = b.placement(survivor, false)
	b.printf("kill: before it, stream leader %s, node-state bucket leader %s, the replicas' consumers on %v; after, %s and %s",
		k.Before.StreamLeader, k.Before.NodesLeader, k.Before.Consumers, k.After.StreamLeader, k.After.NodesLeader)
	if len(k.SurvivorsLost) > 0 {
		b.printf("kill: WRONG: sessions of nodes that were not killed recorded lost: %v", k.SurvivorsLost)
	}
	for msg, c := range k.Warnings {
		b.printf("kill: survivor warning x%d: %s", c, msg)
	}
	b.printf("kill: %s's %d sessions all ended in the log %.2fs after the SIGKILL (first %.2fs; target %.1fs); ends by cause %v, by actor %v",
		victim.name, k.Sessions, k.AllLostSec, k.FirstEndedSec, k.TargetSec, k.EndsByCause, k.EndsByActor)
	b.printf("kill: its %d clients welcomed on another node by %.2fs (p50 %.2fs, p90 %.2fs; %d resumed their session; per node %v; %d failed connect attempts)",
		k.Moved, k.AllMovedSec, k.MovedP50Sec, k.MovedP90Sec, k.Resumed, k.MovedPerNode, k.FailedAttempts)
	return nil
}

// endsSince reads from n's log the session ends recorded for node's
// sessions after seq head (read just before the kill at t0).
func (b *bench) endsSince(n *node, nodeName string, head uint64, t0 time.Time, k *KillResult) error {
	ac, err := audit.NewClient(n.listen, b.token)
	if err != nil {
		return err
	}
	defer ac.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k.EndsByCause, k.EndsByActor, k.SurvivorsLost = map[string]int{}, map[string]int{}, map[string]int{}
	// Event times are the stream's, on this machine's clock: the window
	// only saves reading the whole log; the seq decides.
	err = ac.Events(ctx, audit.Filter{Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED}, Since: t0.Add(-time.Minute)}, false,
		func(r *ledger.Record) error {
			if r.Seq <= head {
				return nil
			}
			cause := strings.ToLower(strings.TrimPrefix(r.Event.GetSessionDisconnected().GetCause().String(), "DISCONNECT_CAUSE_"))
			if r.Event.GetNode() != nodeName {
				if cause == "lost" {
					k.SurvivorsLost[r.Event.GetNode()]++
				}
				return nil
			}
			k.EndsByCause[cause]++
			k.EndsByActor[r.Event.GetActor()]++
			return nil
		})
	if err != nil {
		return fmt.Errorf("kill: read the ends back from %s's log: %w", n.label(), err)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// placement asks n's embedded NATS server where the log's stream, the
// node-state bucket and (withConsumers) the replicas' consumers are.
func (b *bench) placement(n *node, withConsumers bool) (p Placement) {
	if n.nats == "" {
		return Placement{Err: "no NATS address"}
	}
	nc, err := nats.Connect(n.nats, nats.Timeout(5*time.Second))
	if err != nil {
		return Placement{Err: err.Error()}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return Placement{Err: err.Error()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	leader := func(stream string) string {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return "? (" + err.Error() + ")"
		}
		if c := s.CachedInfo().Cluster; c != nil {
			return c.Leader
		}
		return ""
	}
	p.StreamLeader, p.NodesLeader = leader(cluster.DefaultStream), leader("KV_"+cluster.NodesBucket)
	if !withConsumers {
		return p
	}
	p.Consumers = map[string]int{}
	if s, err := js.Stream(ctx, cluster.DefaultStream); err == nil {
		l := s.ListConsumers(ctx)
		for ci := range l.Info() {
			if ci.Cluster != nil {
				p.Consumers[ci.Cluster.Leader]++
			}
		}
		if err := l.Err(); err != nil {
			p.Err = err.Error()
		}
	}
	return p
}

// logWarnings counts the WARN and ERROR lines of a hubd log (JSON) from
// t0 on, by message, but the embedded server's failed route connects.
func logWarnings(path string, t0 time.Time) map[string]int {
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l struct {
			Time  time.Time
			Level string
			Msg   string
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.Before(t0) || (l.Level != "WARN" && l.Level != "ERROR") ||
			strings.HasPrefix(l.Msg, "Error trying to connect to route") {
			continue
		}
		msg := l.Msg
		if len(msg) > 120 {
			msg = msg[:120] + "..."
		}
		out[msg]++
	}
	return out
}
