package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testports"
)

// TestMain checks that a run leaves no goroutine behind: sessions, hubd's
// log copier, HTTP connections to its metrics.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmall runs the whole benchmark against a real hubd child process
// with a few sessions: every phase must complete and report consistent
// figures (this checks the tool, not the speed).
func TestSmall(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "result.json")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	err := runBench(options{sessions: 40, perConn: 10, concurrency: 8, kicks: 5, fanouts: 2, storm: true, data: data,
		jsonOut: out, hubdArgs: "--shutdown-reconnect 100ms --shutdown-jitter 300ms"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 40 || r.Connections != 4 || r.Connect.Failures != 0 || r.Connect.PerSecond <= 0 {
		t.Errorf("connect: %+v", r.Connect)
	}
	if r.Kick.N != 5 || r.Kick.Timeouts != 0 || !r.Kick.Durable || r.Kick.EndP50 <= 0 || r.Kick.EndMax < r.Kick.EndP99 ||
		r.Kick.LiveMin < 35 || r.Kick.LiveMin > r.Kick.LiveMedian || r.Kick.LiveMedian > 39 {
		t.Errorf("kick: %+v", r.Kick)
	}
	// Kicked sessions resume: fan-out and storm cover all 40.
	if r.Fanout.Sessions != 40 || len(r.Fanout.Seconds) != 2 {
		t.Errorf("fan-out: %+v", r.Fanout)
	}
	// The client waits at least the advice (100-400ms) and its backoff (at
	// most 500ms: a kicked client is at attempt 1), plus at most a fifth.
	if r.Storm.Sessions != 40 || r.Storm.Resumed != 40 || r.Storm.AdviceMinMs < 100 || r.Storm.AdviceMaxMs > 400 ||
		r.Storm.WaitMinMs < r.Storm.AdviceMinMs || r.Storm.WaitMaxMs > 1.2*500 {
		t.Errorf("storm: %+v", r.Storm)
	}
	// 40 first connects, 5 resumes after the kicks, 40 after the storm; each
	// session got both fan-out rounds, none twice.
	if c := r.Clients; c.Connects != 85 || c.Resumes != 45 || c.Delivered != 80 || c.Duplicates != 0 {
		t.Errorf("clients: %+v", c)
	}
	if r.Memory.Heap == 0 || r.Memory.RSS == 0 || r.Memory.Goroutines == 0 || r.Memory.BaselineGor == 0 || r.Memory.BaselineStack == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
	// Per session, net of the baseline like RSS and heap: a session costs
	// hubd a goroutine or two, not the baseline's dozens spread over 40.
	if g := r.Memory.GoroutinesPerSs; g <= 0 || g > 4 || r.Memory.Goroutines != r.Memory.BaselineGor+uint64(g*40+0.5) {
		t.Errorf("goroutines per session %.2f (of %d, baseline %d); want the added ones over 40 sessions", g, r.Memory.Goroutines, r.Memory.BaselineGor)
	}
	// Both hubd runs (the first and the one after the storm's restart)
	// logged into one file, appended.
	if log, err := os.ReadFile(filepath.Join(data, "hubd.log")); err != nil || bytes.Count(log, []byte(`"msg":"hubd listening"`)) != 2 {
		t.Errorf("hubd.log: %d hubd starts logged, %v; want 2", bytes.Count(log, []byte(`"msg":"hubd listening"`)), err)
	}
}

// TestOneConnectionPerSession runs the benchmark with --per-conn 1, as
// devices connect: a connection per session, and the table compare.sh
// prints, with the fd limit's largest N.
func TestOneConnectionPerSession(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "result.json")
	o := options{sessions: 12, perConn: 1, concurrency: 4, kicks: 2, fanouts: 1, data: dir, jsonOut: out}
	if err := runBench(o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Sessions != 12 || r.Connections != 12 || r.Fanout.Sessions != 12 || r.Clients.Delivered != 12 || r.Kick.N != 2 || !r.Kick.Durable {
		t.Fatalf("result %+v; want 12 sessions on 12 connections, each notified once, 2 durable kicks", r)
	}
	// hubd's share of a phase this short may be less than one clock tick
	// (0, never less); TestCPUTimesReadsTheNodes checks that it is read at
	// all.
	if r.Connect.ClientsCPUUs <= 0 || r.Fanout.ClientsCPUUs <= 0 || r.Connect.HubdCPUUs < 0 || r.Connect.MeanBatch < 1 {
		t.Errorf("CPU per connect %+v, per delivery %+v; want the clients' measured", r.Connect, r.Fanout)
	}
	if r.Kick.Appends < 2*r.Kick.N || r.Kick.AppendP99 <= 0 || r.Kick.EnforceP99 <= 0 || r.Kick.Commits < 2*r.Kick.N || r.Kick.CommitP99 <= 0 {
		t.Errorf("kick %+v; want at least 2 appends and 2 commits per kick, and their p99 and the enforcement's read from hubd", r.Kick)
	}
	var tab bytes.Buffer
	(&bench{o: o, res: r}).table(&tab)
	for _, want := range []string{"one connection per session", fmt.Sprintf("at most %d sessions", int(r.Machine.FDLimit)-fdsBesidesConns),
		"| connect rate (/s) |", "| fan-out (deliveries/s) |", "| RSS per idle session (KiB) |", "| kick -> client sees end p99 (ms) |",
		"| goroutines per idle session |", "| CPU per delivery, hubd + clients (us) |", "| records per ledger commit during the connects |",
		"| hubd's durable appends during the kicks, p50 / p99 (ms) |"} {
		if !strings.Contains(tab.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tab.String())
		}
	}
}

// TestCPUTimesReadsTheNodes: cpuTimes reads a node's CPU time from /proc
// (user and system, in clock ticks): a child that spins is seen using CPU,
// never more than the wall time it ran (one tick of rounding aside), and
// hubbench's own is read too.
func TestCPUTimesReadsTheNodes(t *testing.T) {
	start := time.Now()
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	b := &bench{nodes: []*node{{cmd: cmd}, {listen: "127.0.0.1:1"}}} // the second is not hubbench's: not read
	var hubd, clients time.Duration
	for deadline := time.Now().Add(10 * time.Second); hubd < 100*time.Millisecond; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("got %s of CPU for a child spinning for 10 s; want at least 100ms", hubd)
		}
		hubd, clients = b.cpuTimes()
	}
	if ran := time.Since(start); hubd > ran+time.Second/clockTicks {
		t.Fatalf("got %s of CPU for a one-thread child that ran %s; want at most that", hubd, ran)
	}
	if clients <= 0 {
		t.Fatalf("got %s of hubbench's own CPU; want more than 0", clients)
	}
}

// TestReservedPort: the ports reserveAddr holds (internal/testports,
// whose tests check the mechanism) take hubd's listener, no other socket
// can bind them, and releasePorts gives every one back.
func TestReservedPort(t *testing.T) {
	b := &bench{}
	defer b.releasePorts()
	var addrs []string
	for range 2 {
		addr, err := b.reserveAddr()
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, addr)
	}
	for _, addr := range addrs {
		if err := testports.Bindable(addrPort(t, addr)); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("bind of reserved %s by another socket: got %v; want EADDRINUSE", addr, err)
		}
		l, err := net.Listen("tcp", addr) // hubd's
		if err != nil {
			t.Fatalf("hubd's listen on reserved %s: %v", addr, err)
		}
		l.Close()
	}
	b.releasePorts()
	for _, addr := range addrs {
		if err := testports.Bindable(addrPort(t, addr)); err != nil {
			t.Fatalf("bind of %s after releasePorts: %v; want the port free", addr, err)
		}
	}
}

func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHistogramQuantile: quantiles from scraped histogram deltas are
// interpolated within their bucket, as Prometheus's histogram_quantile.
func TestHistogramQuantile(t *testing.T) {
	before := hist{le: []float64{0.001, 0.002, 0.004}, cum: []float64{10, 10, 10}, count: 10}
	after := hist{le: before.le, cum: []float64{60, 100, 110}, count: 110}
	d := after.since(before) // 50 up to 1 ms, 40 up to 2 ms, 10 up to 4 ms
	for _, c := range []struct{ q, want float64 }{{0.5, 1.0}, {0.25, 0.5}, {0.75, 1.625}, {0.99, 3.8}, {1, 4}} {
		if got := d.quantile(c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v ms; want %v ms", c.q, got, c.want)
		}
	}
	after.count = 112 // two beyond the highest bound: the highest bound
	if got := after.since(before).quantile(1); got != 4 {
		t.Errorf("quantile(1) beyond the bounds = %v ms; want 4 ms", got)
	}
	if got := (hist{}).quantile(0.99); got != 0 {
		t.Errorf("quantile of nothing = %v; want 0", got)
	}
}

// testToken is the admin token of testHubd's hub.
const testToken = "hubbench-test-admin-token-0123"

// testHubd starts a hubd (in process) with testToken as its admin token
// and a gRPC connection to it; both are closed when the test ends.
func testHubd(t *testing.T, ctx context.Context) (*daemon.Daemon, *grpc.ClientConn) {
	t.Helper()
	d, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Hub: hub.Config{AdminTokens: map[string]string{testToken: "ops"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(sctx); err != nil {
			t.Error(err)
		}
	})
	return d, conn
}

// TestKickDurabilityCheck: the kick check reads the kicks back from the
// hub's ledger, so it can fail: a kick recorded with its session's end
// passes; a kick that ended no session, or a reply naming another seq or
// session, does not.
func TestKickDurabilityCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, conn := testHubd(t, ctx)
	b := &bench{nodes: []*node{{listen: d.Addr()}}, token: testToken, admin: hubpb.NewAdminClient(conn)}
	c, err := client.Dial(ctx, d.Addr(), client.WithUser("kim", "d"), client.WithReconnect(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	kick := func(session string) kickDone {
		t.Helper()
		actx, acancel := b.adminCtx(10 * time.Second)
		defer acancel()
		rep, err := b.admin.Kick(actx, &hubpb.KickRequest{SessionId: session, Reason: "hubbench test"})
		if err != nil {
			t.Fatal(err)
		}
		return kickDone{seq: rep.GetSeq(), eventID: rep.GetEventId(), session: session}
	}
	good := kick(c.Session().ID)
	<-c.Done()
	if err := b.kicksRecorded([]kickDone{good}, 10*time.Second); err != nil {
		t.Fatalf("a kick recorded with its end: %v", err)
	}
	nobody := kick("01ARZ3NDEKTSV4RRFFQ69G5FAV") // recorded, but no session ended
	for _, tc := range []struct {
		name string
		k    kickDone
		want string
	}{
		{"no end", nobody, "no session_disconnected"},
		{"wrong seq", kickDone{seq: good.seq + 1000, eventID: good.eventID, session: good.session}, "is not that kick_requested"},
		{"wrong session", kickDone{seq: good.seq, eventID: good.eventID, session: "01ARZ3NDEKTSV4RRFFQ69G5FAW"}, "is not that kick_requested"},
		{"wrong event", kickDone{seq: good.seq, eventID: nobody.eventID, session: good.session}, "is not that kick_requested"},
	} {
		if err := b.kicksRecorded([]kickDone{good, tc.k}, 200*time.Millisecond); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestWatchEnds: the kill phase lists every page of a node's sessions;
// its watch over a survivor's log reports the first and the last end of
// the sessions it waits for, only ends recorded after the head it was
// given, and fails when one never comes.
func TestWatchEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, conn := testHubd(t, ctx)
	n := &node{listen: d.Addr(), admin: hubpb.NewAdminClient(conn)}
	b := &bench{nodes: []*node{n}, token: testToken, admin: n.admin}
	var ids []string
	for _, user := range []string{"kim", "lee", "max"} {
		c, err := client.Dial(ctx, d.Addr(), client.WithUser(user, "d"), client.WithReconnect(false))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ids = append(ids, c.Session().ID)
	}
	// The list comes in pages (ListSessions gives 500 by default): all
	// three, two a page.
	listed, err := b.listPages(n, "", 2)
	if err != nil || len(listed) != 3 || !listed[ids[0]] || !listed[ids[1]] || !listed[ids[2]] {
		t.Fatalf("listed two a page: %v, %v; want the three sessions %v", listed, err, ids)
	}
	kick := func(id string) uint64 {
		t.Helper()
		actx, acancel := b.adminCtx(10 * time.Second)
		defer acancel()
		rep, err := b.admin.Kick(actx, &hubpb.KickRequest{SessionId: id, Reason: "hubbench test"})
		if err != nil {
			t.Fatal(err)
		}
		return rep.GetSeq()
	}
	watch := func(d time.Duration, head uint64, ids ...string) (first, all time.Time, err error) {
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		want := map[string]bool{}
		for _, id := range ids {
			want[id] = true
		}
		err = b.watchEnds(wctx, n, "test", want, head, time.Now(), func(t time.Time) { first = t }, func(t time.Time) { all = t })
		return first, all, err
	}

	// Two sessions kicked one after the other, watched from before.
	type result struct {
		first, all time.Time
		err        error
	}
	done := make(chan result, 1)
	go func() {
		f, a, err := watch(10*time.Second, 0, ids[0], ids[1])
		done <- result{f, a, err}
	}()
	before := time.Now()
	kick(ids[0])
	time.Sleep(50 * time.Millisecond)
	kick(ids[1])
	r := <-done
	if r.err != nil || r.first.Before(before) || !r.all.After(r.first) {
		t.Errorf("two kicked: first %v, all %v (kicks from %v), %v; want the first after the first kick, the last after it", r.first, r.all, before, r.err)
	}
	// Both ends are in the log now: an event recorded after them is the head.
	actx, acancel := b.adminCtx(10 * time.Second)
	rep, err := b.admin.Notify(actx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "nobody", Topic: "t", Payload: []byte("{}")})
	acancel()
	if err != nil {
		t.Fatal(err)
	}
	// Ended at or before the head given: not counted. Never ended: not
	// counted. Either way one of the two is missing.
	for _, tc := range []struct {
		name string
		head uint64
		ids  []string
	}{{"ended before the head", rep.GetSeq(), ids[:2]}, {"live", 0, []string{ids[0], ids[2]}}} {
		if _, _, err := watch(300*time.Millisecond, tc.head, tc.ids...); err == nil || !strings.Contains(err.Error(), "of test's 2 sessions still had no end") {
			t.Errorf("%s: %v; want an error saying they have no end", tc.name, err)
		}
	}
	if _, _, err := watch(10*time.Second, 0, ids[1], ids[0]); err != nil {
		t.Errorf("watched again from 0: %v; want both ends found", err)
	}
}

// TestSmallCluster runs cluster mode against three real hubd processes
// with embedded NATS servers: sessions spread over the nodes, every kick
// through the first node to a session on another, fan-out to all, and the
// last node SIGKILLed: its sessions recorded lost by a survivor and its
// clients welcomed on another node (this checks the tool, not the speed).
func TestSmallCluster(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "result.json")
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := parseOptions([]string{"--cluster", "3", "--sessions", "30", "--concurrency", "8", "--kicks", "5", "--fanouts", "2",
		"--kill-node", "--cluster-heartbeat", "250ms", "--data", data, "--json", out})
	if err != nil {
		t.Fatal(err)
	}
	if err := runBench(o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	c := r.Cluster
	if c == nil {
		t.Fatal("no cluster section")
	}
	if c.Nodes != 3 || !c.Started || len(c.Addrs) != 3 || !slices.Equal(c.Names, []string{"node-a", "node-b", "node-c"}) ||
		c.Replicas != 3 || c.HeartbeatMs != 250 || c.LostAfterMs != 750 {
		t.Errorf("cluster: %+v", c)
	}
	// Session i starts at node i%3, and lands there.
	if !slices.Equal(c.SessionsPerNode, []int{10, 10, 10}) {
		t.Errorf("sessions per node %v; want [10 10 10]", c.SessionsPerNode)
	}
	if len(c.KicksPerNode) != 3 || c.KicksPerNode[0] != 0 || c.KicksPerNode[1]+c.KicksPerNode[2] != 5 {
		t.Errorf("kicks per node %v; want 5, none on the first node", c.KicksPerNode)
	}
	if r.Sessions != 30 || r.Connections != 33 || r.Connect.Failures != 0 {
		t.Errorf("sessions %d over %d connections, connect %+v; want 30 over 33 (one each, and one per node for the Admin API)", r.Sessions, r.Connections, r.Connect)
	}
	if r.Kick.N != 5 || r.Kick.Timeouts != 0 || !r.Kick.Durable || r.Kick.EndP50 <= 0 || r.Kick.CallP99 <= 0 {
		t.Errorf("kick: %+v", r.Kick)
	}
	if r.Baseline.NotifyN != 5 || r.Baseline.NotifyP50 <= 0 || r.Baseline.NotifyP99 < r.Baseline.NotifyP50 || r.Baseline.AppendP50 <= 0 {
		t.Errorf("baseline: %+v", r.Baseline)
	}
	if r.Fanout.Sessions != 30 || len(r.Fanout.Seconds) != 2 {
		t.Errorf("fan-out: %+v", r.Fanout)
	}
	if r.Storm.Skipped == "" || r.Storm.Sessions != 0 {
		t.Errorf("storm: %+v; want it skipped", r.Storm)
	}
	if r.Memory.RSS == 0 || r.Memory.Goroutines == 0 {
		t.Errorf("memory: %+v", r.Memory)
	}
	k := c.Kill
	if k == nil {
		t.Fatal("no kill section")
	}
	if k.Node != "node-c" || k.Addr != c.Addrs[2] || k.Sessions != 10 || k.Clients != 10 || k.TargetSec != 1.75 {
		t.Errorf("kill: %+v", k)
	}
	// No survivor may judge node-c dead before --lost-after (750ms) passed
	// since its last heartbeat (at most one heartbeat before the kill).
	if k.FirstEndedSec < 0.5 || k.FirstEndedSec > k.AllLostSec {
		t.Errorf("kill: all lost after %.2fs, first after %.2fs; want the first after 0.5s at least", k.AllLostSec, k.FirstEndedSec)
	}
	// A survivor recorded each of node-c's sessions lost (once; a second
	// record of one would be counted too).
	if k.EndsByCause["lost"] < 10 || len(k.EndsByCause) != 1 {
		t.Errorf("ends by cause %v; want lost for each of the 10", k.EndsByCause)
	}
	for actor := range k.EndsByActor {
		if actor != "node:node-a" && actor != "node:node-b" {
			t.Errorf("ends by actor %v; want the survivors", k.EndsByActor)
		}
	}
	// Its clients were welcomed on node-a, the next in their list.
	if k.Moved != 10 || k.AllMovedSec <= 0 || k.MovedP50Sec > k.AllMovedSec || !slices.Equal(k.MovedPerNode, []int{10, 0, 0}) {
		t.Errorf("kill: moved %d by %.2fs (p50 %.2fs), per node %v; want 10, all to node-a", k.Moved, k.AllMovedSec, k.MovedP50Sec, k.MovedPerNode)
	}
	if k.Before.StreamLeader == "" || len(k.Before.Consumers) == 0 || k.After.StreamLeader == "node-c" {
		t.Errorf("placement before %+v, after %+v", k.Before, k.After)
	}
	// No live session of a survivor is recorded lost (they were, while
	// liveness was an expiring bucket whose leader died with node-c).
	if len(k.SurvivorsLost) != 0 {
		t.Errorf("sessions of the survivors recorded lost: %v; want none (JetStream before the kill: %+v)", k.SurvivorsLost, k.Before)
	}
	// 30 first connects, 5 resumes after the kicks, 10 after the kill;
	// each session got both fan-out rounds.
	if cs := r.Clients; cs.Connects != 45 || cs.Resumes != 15 || cs.Delivered != 60 || cs.Duplicates != 0 {
		t.Errorf("clients: %+v; want 45 connects (15 resumes), 60 deliveries", cs)
	}
	for _, name := range c.Names {
		if log, err := os.ReadFile(filepath.Join(data, name, "hubd.log")); err != nil || bytes.Count(log, []byte(`"msg":"hubd listening"`)) != 1 {
			t.Errorf("%s's hubd.log: %v; want one start logged", name, err)
		}
	}
}

// TestFlags: every bad flag or combination is refused with one message
// naming it; good ones get their mode's defaults.
func TestFlags(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "admin.token")
	for _, tc := range []struct {
		args []string
		want string // a part of the error; "" for none
	}{
		{[]string{"--sessions", "0"}, "--sessions, --per-conn and --concurrency must be positive"},
		{[]string{"--sessions", "10", "--kicks", "10"}, "--kicks 10: want 0 up to --sessions - 1 = 9"},
		{[]string{"--per-conn", "0"}, "must be positive"},
		{[]string{"extra"}, `stray argument "extra"`},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"--kicks", "many"}, `--kicks "many": want a number or auto`},
		{[]string{"--transport", "udp"}, `--transport "udp": want grpc or ws`},
		{[]string{"--ws-ack", "never"}, `--ws-ack "never": want pong, each or a positive duration`},
		{[]string{"--cluster", "3", "--transport", "ws"}, "--transport ws is for single mode"},
		{[]string{"--cluster", "1"}, "--cluster 1: want 2 to 26 nodes"},
		{[]string{"--cluster", "27"}, "--cluster 27: want 2 to 26 nodes"},
		{[]string{"--cluster", "3", "--addrs", "a:1,b:2"}, "give one of them"},
		{[]string{"--addrs", "a:1"}, "want the addresses of 2 or more nodes"},
		{[]string{"--addrs", "a:1,b", "--token-file", tok}, `"b" is not HOST:PORT`},
		{[]string{"--addrs", "a:1,a:1", "--token-file", tok}, "a:1 is listed twice"},
		{[]string{"--addrs", "a:1,b:2"}, "--addrs needs --token-file"},
		{[]string{"--addrs", "a:1,b:2", "--token-file", tok, "--hubd", "x"}, "--hubd is for the hubd nodes hubbench starts"},
		{[]string{"--addrs", "a:1,b:2", "--token-file", tok, "--data", "x"}, "--data is for the hubd nodes hubbench starts"},
		{[]string{"--addrs", "a:1,b:2", "--token-file", tok, "--kill-node"}, "--kill-node needs --cluster"},
		{[]string{"--token-file", tok}, "--token-file goes with --addrs"},
		{[]string{"--kill-node"}, "--kill-node needs --cluster"},
		{[]string{"--cluster-heartbeat", "2s"}, "--cluster-heartbeat needs --cluster"},
		{[]string{"--lost-after", "5s"}, "--lost-after needs --cluster"},
		{[]string{"--cluster", "2", "--kill-node"}, "--kill-node needs --cluster 3 or more"},
		{[]string{"--cluster", "3", "--per-conn", "10"}, "--per-conn is for single mode"},
		{[]string{"--cluster", "3", "--storm"}, "--storm is for single mode"},
		{[]string{"--cluster", "3", "--cluster-heartbeat", "0s"}, "--cluster-heartbeat 0s: want a positive duration"},
		{[]string{"--cluster", "3", "--cluster-heartbeat", "1s", "--lost-after", "1500ms"}, "--lost-after 1.5s: want 0 (3 heartbeats) or at least two heartbeats (2s)"},
		// 30 sessions over 3 nodes: 20 on the others.
		{[]string{"--cluster", "3", "--sessions", "30", "--kicks", "21"}, "--kicks 21: want 0 up to the 20 sessions on nodes other than the first"},
		{[]string{"--cluster", "3", "--sessions", "30", "--kicks", "20"}, ""},
		{[]string{"--addrs", "a:1, b:2", "--token-file", tok}, ""},
		{[]string{"--sessions", "100"}, ""},
	} {
		_, err := parseOptions(tc.args)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v; want no error", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: %v; want an error saying %q", tc.args, err, tc.want)
		case tc.want != "" && strings.Count(err.Error(), "\n") > 0:
			t.Errorf("%q: %q; want one line", tc.args, err)
		}
	}
	// The defaults of each mode.
	o, err := parseOptions([]string{"--sessions", "100"})
	if err != nil || o.kicks != 99 || o.perConn != 100 || !o.storm || o.clustered() || o.connections() != 1 {
		t.Errorf("single: %+v, %v; want 99 kicks, 100 per connection, the storm", o, err)
	}
	o, err = parseOptions([]string{"--cluster", "3", "--sessions", "3000"})
	if err != nil || o.kicks != 1000 || o.perConn != 1 || o.storm || o.connections() != 3000 || o.effectiveLostAfter() != 3*time.Second {
		t.Errorf("cluster: %+v, %v; want 1000 kicks, a connection per session, no storm, lost-after 3s", o, err)
	}
	o, err = parseOptions([]string{"--cluster", "3", "--sessions", "30"})
	if err != nil || o.kicks != 20 {
		t.Errorf("cluster of 30 sessions: %d kicks, %v; want 20 (the sessions on the other nodes)", o.kicks, err)
	}
	o, err = parseOptions([]string{"--addrs", "a:1, b:2", "--token-file", tok})
	if err != nil || !slices.Equal(o.addrs, []string{"a:1", "b:2"}) || o.nodes() != 2 {
		t.Errorf("addrs: %q, %v; want a:1 and b:2", o.addrs, err)
	}
	var help errHelp
	if _, err := parseOptions([]string{"-h"}); !errors.As(err, &help) || !strings.Contains(help.text, "--kill-node") {
		t.Errorf("-h: %v; want the usage, cluster flags included", err)
	}
}

// TestUsage: --help and --version exit 0; a bad flag or value is one line
// of error and exit 2.
func TestUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Usage: hubbench [flags]"},
		{[]string{"--version"}, 0, "hubbench "},
		{[]string{"--sesions", "3"}, 2, "hubbench: unknown flag: --sesions (see hubbench --help)\n"},
		{[]string{"--kicks", "many"}, 2, "hubbench: --kicks \"many\": want a number or auto"},
		{[]string{"--sessions", "5", "--kicks", "5"}, 2, "--kicks 5: want 0 up to --sessions - 1 = 4"},
		{[]string{"extra"}, 2, "stray argument \"extra\""},
	} {
		var out, errb bytes.Buffer
		code := run(c.args, &out, &errb)
		if code != c.code || !strings.Contains(out.String()+errb.String(), c.want) || (code == 2 && strings.Count(errb.String(), "\n") != 1) {
			t.Errorf("hubbench %q: exit %d, %q %q; want exit %d and %q on one line", c.args, code, out.String(), errb.String(), c.code, c.want)
		}
	}
}
