// Command hubbench is the load benchmark for hubd. It starts hubd as a child
// process on loopback (every connect and kick durable in its ledger, as in
// production), holds N concurrent sessions against it, and measures the
// connect rate, hubd's memory per idle session, kick latency from the
// Admin.Kick call to the client seeing its stream end, notification
// fan-out to all sessions, and a reconnect storm after a shutdown.
//
// The sessions are hub/client clients, as an application holds them
// (auto-ack, reconnect as advised, with the client's jittered backoff),
// --per-conn of them sharing one gRPC connection (client.WithConn); with
// --transport ws, each is one WebSocket connection to hubd's --ws-listen
// held by a small client of hubbench's own (ws.go). Kicked sessions
// resume; fan-out and storm wait until all N are live again.
// --per-conn 1 gives each session a connection of its own, as devices
// connect; each takes an open file in hubbench and one in hubd, so N is
// bounded by the open-file limit (hubbench raises its soft limit to the
// hard one, which hubd inherits, and says the largest N that fits). The
// summary ends with the table ../shared/peers/compare.sh prints, and the
// CPU time hubd and the clients spent per connect and per delivery.
//
//	go run ./cmd/hubbench --sessions 20000 --json bench.json
//	go run ./cmd/hubbench --sessions 10000 --per-conn 1 --storm=false
//	go run ./cmd/hubbench --transport ws --sessions 10000 --json bench.json
//
// # Cluster mode
//
// With --cluster N hubbench starts N hubd nodes sharing one log on embedded
// NATS JetStream servers (--addrs uses running nodes instead). Session i
// dials the node list starting at node i%N, on a connection of its own, so
// the client can move to another node. Every kick goes through the first
// node's Admin API to a session another node holds; fan-out notifies all
// through the first node and waits for every session on every node. With
// --kill-node the last node is SIGKILLed at the end: hubbench times until
// a survivor's log holds the end of each of its sessions (the survivors
// recorded them lost; hubbench follows the log through the Audit service)
// and until each of its clients was welcomed on another node.
//
//	go run ./cmd/hubbench --cluster 3 --sessions 3000 --kicks 500 --kill-node
//
// See docs/performance.md for figures.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/testports"
)

type bench struct {
	o        options
	nodes    []*node      // the first is the one admin calls go through
	wsListen string       // with --transport ws: hubd's --ws-listen (single mode)
	http     *http.Client // for hubd's metrics and pprof
	conns    []*grpc.ClientConn
	sessions []*sess
	admin    hubpb.AdminClient
	token    string
	reserved []*testports.Reservation // the ports of the nodes started (reserveAddr)

	live           atomic.Int64 // sessions welcomed and not yet ended
	delivered      atomic.Int64
	failedAttempts atomic.Int64
	gaveUp         atomic.Int64 // clients that ended on their own
	gaveUpWhy      atomic.Value // the first one's Disconnect, as a string
	storm          stormStats
	kill           killStats
	res            Result
}

// Result is what hubbench measured; --json writes it.
type Result struct {
	Machine struct {
		CPUs      int    `json:"cpus"`
		CPUModel  string `json:"cpu_model"`
		GoVersion string `json:"go_version"`
		// FDLimit is the open-file limit hubbench set (the hard limit),
		// which hubd inherits; FDLimitBefore the soft limit it started with.
		FDLimit       uint64 `json:"fd_limit"`
		FDLimitBefore uint64 `json:"fd_limit_before"`
	} `json:"machine"`
	// Baseline: one durable ledger append at a time, in this process, on
	// the same disk, measured in the same run: the unit a kick costs two of.
	Baseline struct {
		AppendP50 float64 `json:"append_p50_ms"`
		AppendP99 float64 `json:"append_p99_ms"`
		// Notify: Admin.Notify to a user with no sessions through the
		// (first) node, one call at a time with every session connected:
		// one event recorded (on one node an fsynced append; in a cluster
		// a JetStream publish acknowledged by a quorum and stored in the
		// node's replica) and applied, and nothing to deliver. The unit a
		// kick's call costs one of.
		NotifyN   int     `json:"notify_n"`
		NotifyP50 float64 `json:"notify_p50_ms"`
		NotifyP99 float64 `json:"notify_p99_ms"`
	} `json:"baseline"`
	// Transport the sessions use: "grpc" (hub/client, --per-conn streams
	// per HTTP/2 connection) or "ws" (one WebSocket each).
	Transport   string `json:"transport"`
	Sessions    int    `json:"sessions"`
	Connections int    `json:"connections"`
	Connect     struct {
		Seconds    float64 `json:"seconds"`
		PerSecond  float64 `json:"per_second"`
		Failures   int     `json:"failures"`
		FirstError string  `json:"first_error,omitempty"`
		// CPU time per connect, hubd's and the clients' (hubbench's own).
		HubdCPUUs    float64 `json:"hubd_cpu_us_per_connect"`
		ClientsCPUUs float64 `json:"clients_cpu_us_per_connect"`
		// MeanBatch is the records per ledger commit during the connects:
		// how well group commit batched them.
		MeanBatch float64 `json:"ledger_mean_batch"`
	} `json:"connect"`
	Memory struct {
		BaselineRSS     uint64  `json:"baseline_rss_bytes"`
		BaselineHeap    uint64  `json:"baseline_heap_bytes"`
		RSS             uint64  `json:"rss_bytes"`
		RSSAnon         uint64  `json:"rss_anon_bytes"`
		RSSFile         uint64  `json:"rss_file_bytes"`
		BaselineAnon    uint64  `json:"baseline_rss_anon_bytes"`
		BaselineStack   uint64  `json:"baseline_stack_inuse_bytes"`
		BaselineGor     uint64  `json:"baseline_goroutines"`
		Stack           uint64  `json:"stack_inuse_bytes"`
		AnonPerSession  float64 `json:"rss_anon_per_session_bytes"`
		StackPerSession float64 `json:"stack_per_session_bytes"`
		Heap            uint64  `json:"heap_bytes"`
		Goroutines      uint64  `json:"goroutines"`
		RSSPerSession   float64 `json:"rss_per_session_bytes"`
		HeapPerSession  float64 `json:"heap_per_session_bytes"`
		GoroutinesPerSs float64 `json:"goroutines_per_session"`
	} `json:"memory"`
	Kick struct {
		N int `json:"n"`
		// Other sessions live at each kick: the kicked sessions resume
		// after the client's backoff, so a few are away at any time.
		LiveMin    int     `json:"other_sessions_live_min"`
		LiveMedian int     `json:"other_sessions_live_median"`
		CallP50    float64 `json:"call_p50_ms"`
		CallP99    float64 `json:"call_p99_ms"`
		FrameP50   float64 `json:"disconnect_frame_p50_ms"`
		FrameP99   float64 `json:"disconnect_frame_p99_ms"`
		EndP50     float64 `json:"end_p50_ms"`
		EndP99     float64 `json:"end_p99_ms"`
		EndMax     float64 `json:"end_max_ms"`
		// Timeouts are kicks whose end the client did not see within
		// kickTimeout; they count as kickTimeout in the end percentiles.
		Timeouts int `json:"timeouts"`
		// Appends are hubd's durable appends during the kicks (the kicks',
		// the ends' and the kicked clients' resumes'), and AppendP50/P99
		// their latency from its sessionledger_ledger_append_seconds
		// histogram: what the fsyncs in a kick's path cost in this run.
		Appends   int     `json:"hubd_appends"`
		AppendP50 float64 `json:"hubd_append_p50_ms"`
		AppendP99 float64 `json:"hubd_append_p99_ms"`
		// Commits are hubd's ledger transactions during the kicks (each
		// node's own in a cluster: its replica's), and CommitP50/P99 their
		// time from sessionledger_ledger_commit_seconds: the disk's share of
		// the appends above (a single node's append waits for its own commit
		// and at most one in flight).
		Commits   int     `json:"hubd_commits"`
		CommitP50 float64 `json:"hubd_commit_p50_ms"`
		CommitP99 float64 `json:"hubd_commit_p99_ms"`
		// EnforceP50/P99: from the kick event's append to the session's
		// end recorded, from hubd's sessionledger_enforce_seconds.
		EnforceP50 float64 `json:"hubd_enforce_p50_ms"`
		EnforceP99 float64 `json:"hubd_enforce_p99_ms"`
		// Durable: every kick's ActionReply seq was read back from hubd's
		// ledger (through its Audit service) as that kick_requested, and
		// the kicked session's session_disconnected, caused by it, was
		// recorded after it. A run where that fails ends with an error.
		Durable   bool   `json:"durable"`
		LedgerSeq uint64 `json:"ledger_seq_after"`
	} `json:"kick"`
	Fanout struct {
		Rounds       int       `json:"rounds"`
		Sessions     int       `json:"sessions"`
		Seconds      []float64 `json:"seconds"`
		PerSecondMed float64   `json:"deliveries_per_second_median"`
		// CPU time per delivery over all rounds, hubd's and the clients'.
		HubdCPUUs    float64 `json:"hubd_cpu_us_per_delivery"`
		ClientsCPUUs float64 `json:"clients_cpu_us_per_delivery"`
	} `json:"fanout"`
	Storm struct {
		Sessions      int     `json:"sessions"`
		ShutdownSec   float64 `json:"shutdown_seconds"`
		RestartSec    float64 `json:"restart_seconds"`
		AllResumedSec float64 `json:"all_resumed_seconds"`
		Resumed       int     `json:"resumed"`
		AdviceMinMs   float64 `json:"advice_min_ms"`
		AdviceMaxMs   float64 `json:"advice_max_ms"`
		WaitMinMs     float64 `json:"client_wait_min_ms"`
		WaitMaxMs     float64 `json:"client_wait_max_ms"`
		ResumeP10     float64 `json:"resume_p10_seconds"`
		ResumeP50     float64 `json:"resume_p50_seconds"`
		ResumeP90     float64 `json:"resume_p90_seconds"`
		PerSecond     []int   `json:"resumed_per_second"`
		Retries       int64   `json:"retries"`
		// Skipped says why the storm did not run (cluster mode).
		Skipped string `json:"skipped,omitempty"`
	} `json:"storm"`
	// Cluster is set in cluster mode (--cluster, --addrs).
	Cluster *ClusterResult `json:"cluster,omitempty"`
	// Clients sums the hub/client Stats of every session at the end.
	Clients struct {
		Connects       int    `json:"connects"`
		Resumes        int    `json:"resumes"`
		Delivered      uint64 `json:"delivered"`
		Redelivered    uint64 `json:"redelivered"`
		Duplicates     uint64 `json:"duplicates"`
		FailedAttempts int64  `json:"failed_attempts"`
	} `json:"clients"`
}

const usageHead = `hubbench measures hubd under load: it starts hubd as a child process on
127.0.0.1 (every connect and kick durable in its ledger, as in production),
holds --sessions concurrent sessions against it, and reports the connect
rate, hubd's memory per idle session, kick latency, notification fan-out
and a reconnect storm after a restart. docs/performance.md has figures.
With --cluster N it starts N hubd nodes sharing one log on embedded NATS
JetStream (--addrs uses running ones), kicks across nodes, and with
--kill-node times a node's SIGKILL until its sessions are recorded lost and
its clients resumed elsewhere.

Usage: hubbench [flags]

Examples:
  hubbench --sessions 20000 --json bench.json
  hubbench --sessions 2000 --kicks 100 --storm=false
  hubbench --hubd ./hubd --hubd-args "--heartbeat 30s" --profile prof/
  hubbench --cluster 3 --sessions 3000 --kicks 500 --kill-node

Flags:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is hubbench's main: exit 0 done, 1 the benchmark failed, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseOptions(args)
	var help errHelp
	switch {
	case errors.As(err, &help):
		fmt.Fprint(stdout, help.text)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "hubbench: %v\n", err)
		return 2
	}
	if err := runBench(o); err != nil {
		fmt.Fprintf(stderr, "hubbench: %v\n", err)
		return 1
	}
	return 0
}

// errHelp carries what --help or --version print.
type errHelp struct{ text string }

func (e errHelp) Error() string { return e.text }

func runBench(o options) error {
	b := &bench{o: o, http: &http.Client{Transport: &http.Transport{}}}
	defer b.http.CloseIdleConnections()
	b.machine()
	if err := b.raiseFileLimit(); err != nil {
		return err
	}
	if err := b.baseline(); err != nil {
		return err
	}
	var cleanup []func()
	defer func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}()
	if len(o.addrs) == 0 && o.hubdPath == "" {
		dir, err := os.MkdirTemp("", "hubbench-bin-")
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		b.o.hubdPath = filepath.Join(dir, "hubd")
		fmt.Fprintln(os.Stderr, "building hubd ...")
		if out, err := exec.Command("go", "build", "-o", b.o.hubdPath, "github.com/sessionledger/sessionledger/cmd/hubd").CombinedOutput(); err != nil {
			return fmt.Errorf("build hubd (run inside the repository or pass --hubd): %v\n%s", err, out)
		}
	}
	data := o.data
	if data == "" && len(o.addrs) == 0 {
		dir, err := os.MkdirTemp("", "hubbench-data-")
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		data = dir
	}
	// Every node stops, however the run ends, and only then are its ports
	// given back; the sessions close first (registered later, so run
	// earlier).
	cleanup = append(cleanup, b.releasePorts, b.stopAll)
	var err error
	switch {
	case o.cluster > 0:
		err = b.startCluster(data)
	case len(o.addrs) > 0:
		err = b.useNodes()
	default:
		err = b.startSingle(data)
	}
	if err != nil {
		return err
	}
	cleanup = append(cleanup, func() {
		for _, n := range b.nodes {
			if n.conn != nil {
				n.conn.Close()
			}
		}
	})

	nconn := o.connections()
	if !o.clustered() {
		grpcConns := nconn
		if o.transport == "ws" {
			grpcConns = 1 // for the Admin API only
		}
		// What hub/client gives the connections it dials itself (WithConn
		// leaves that to the application): keepalive, and gRPC's reconnect
		// backoff capped at the client's Backoff.Max.
		for range grpcConns {
			c, err := grpc.NewClient(b.nodes[0].listen, append(client.DialOptions(client.Backoff{}),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<20)))...)
			if err != nil {
				return err
			}
			b.conns = append(b.conns, c)
		}
		cleanup = append(cleanup, func() {
			for _, c := range b.conns {
				c.Close()
			}
		})
		b.admin = hubpb.NewAdminClient(b.conns[0])
	} else {
		b.admin = b.nodes[0].admin
	}
	cleanup = append(cleanup, b.closeSessions) // before the connections close and hubd stops
	b.res.Transport, b.res.Sessions, b.res.Connections = o.transport, o.sessions, nconn
	if o.clustered() {
		b.res.Connections += len(b.nodes) // one per node for the Admin API
	}

	measureMemory := b.nodes[0].started()
	var base memstat
	if measureMemory {
		time.Sleep(time.Second)
		base = b.memory()
		b.res.Memory.BaselineRSS, b.res.Memory.BaselineHeap, b.res.Memory.BaselineAnon = base.rss, base.heap, base.anon
		b.res.Memory.BaselineStack, b.res.Memory.BaselineGor = base.stack, base.goroutines
	}

	if err := b.connectAll(); err != nil {
		return err
	}
	// Dial returns at the Welcome; OnConnect, which counts a session
	// live, runs on the client's dispatcher just after.
	if err := b.waitAllLive("after connecting", time.Minute); err != nil {
		return err
	}
	if o.clustered() {
		b.spread()
	}
	if measureMemory {
		time.Sleep(2 * time.Second) // let the ramp's garbage go and the sessions settle
		b.measureMemory()
	} else {
		b.printf("memory: not measured (--addrs: hubbench does not run the nodes)")
	}
	if o.profile != "" {
		if err := b.saveProfiles(o.profile); err != nil {
			return err
		}
	}

	if err := b.notifyBaseline(); err != nil {
		return err
	}
	if err := b.kickAll(); err != nil {
		return err
	}
	if err := b.fanout(); err != nil {
		return err
	}
	if o.storm {
		if err := b.reconnectStorm(); err != nil {
			return err
		}
	} else if o.clustered() {
		b.res.Storm.Skipped = "cluster mode: the storm restarts the one hubd of single mode"
		b.printf("storm: skipped (%s)", b.res.Storm.Skipped)
	}
	if o.killNode {
		if err := b.killNode(); err != nil {
			return err
		}
	}
	b.clientStats()
	b.summary(os.Stdout)
	if o.jsonOut != "" {
		out, _ := json.MarshalIndent(b.res, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// startSingle starts the one hubd of single mode on a fixed port, reserved
// for the run (so the clients find it again after the storm's restart, and
// only it), and reads its admin token.
func (b *bench) startSingle(data string) error {
	addr, err := b.reserveAddr()
	if err != nil {
		return err
	}
	n := &node{data: data, listen: addr}
	b.nodes = []*node{n}
	if b.o.transport == "ws" {
		if b.wsListen, err = b.reserveAddr(); err != nil {
			return err
		}
	}
	if err := b.startHubd(n); err != nil {
		return err
	}
	tok, err := hubapi.FirstAdminToken(filepath.Join(n.data, hubapi.AdminTokenFile))
	if err != nil {
		return err
	}
	b.token = tok
	return nil
}

// measureMemory reads the started nodes' memory with every session idle,
// net of the baseline before the first connect, per session.
func (b *bench) measureMemory() {
	mem := b.memory()
	m := &b.res.Memory
	m.RSS, m.RSSAnon, m.RSSFile, m.Heap, m.Stack, m.Goroutines = mem.rss, mem.anon, mem.file, mem.heap, mem.stack, mem.goroutines
	n := float64(b.live.Load())
	m.RSSPerSession = float64(int64(mem.rss)-int64(m.BaselineRSS)) / n
	m.AnonPerSession = float64(int64(mem.anon)-int64(m.BaselineAnon)) / n
	m.HeapPerSession = float64(int64(mem.heap)-int64(m.BaselineHeap)) / n
	m.StackPerSession = float64(int64(mem.stack)-int64(m.BaselineStack)) / n
	m.GoroutinesPerSs = float64(int64(mem.goroutines)-int64(m.BaselineGor)) / n
	what := "hubd"
	if len(b.nodes) > 1 {
		what = fmt.Sprintf("the %d hubd nodes together", len(b.nodes))
	}
	b.printf("memory: %s RSS %.1f MiB (anon %.1f, file %.1f; baseline %.1f), heap %.1f MiB (baseline %.1f), stacks %.1f MiB (baseline %.1f), %d goroutines (baseline %d)",
		what, mib(mem.rss), mib(mem.anon), mib(mem.file), mib(m.BaselineRSS), mib(mem.heap), mib(m.BaselineHeap), mib(mem.stack), mib(m.BaselineStack), mem.goroutines, m.BaselineGor)
}

func (b *bench) printf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func (b *bench) machine() {
	m := &b.res.Machine
	m.CPUs, m.GoVersion = runtime.NumCPU(), runtime.Version()
	if f, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(f), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
}
