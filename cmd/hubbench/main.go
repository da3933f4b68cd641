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
// See docs/performance.md for figures.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/version"
)

type options struct {
	sessions    int
	perConn     int
	concurrency int
	kicks       int
	fanouts     int
	storm       bool
	hubdPath    string
	data        string
	jsonOut     string
	hubdArgs    string
	profile     string
	transport   string        // "grpc" or "ws"
	wsAck       string        // "pong", "each" or a duration
	wsAckEvery  time.Duration // from wsAck: -1 with pongs, 0 each, > 0 that long after the first unacked
}

type bench struct {
	o        options
	data     string
	listen   string
	wsListen string // with --transport ws: hubd's --ws-listen
	metrics  string
	hubd     *exec.Cmd
	hubdDone chan struct{} // closed once hubd exited and its log is closed
	http     *http.Client  // for hubd's metrics and pprof
	conns    []*grpc.ClientConn
	sessions []*sess
	admin    hubpb.AdminClient
	token    string

	live           atomic.Int64 // sessions welcomed and not yet ended
	delivered      atomic.Int64
	failedAttempts atomic.Int64
	gaveUp         atomic.Int64 // clients that ended on their own
	gaveUpWhy      atomic.Value // the first one's Disconnect, as a string
	storm          stormStats
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
	} `json:"storm"`
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

Usage: hubbench [flags]

Examples:
  hubbench --sessions 20000 --json bench.json
  hubbench --sessions 2000 --kicks 100 --storm=false
  hubbench --hubd ./hubd --hubd-args "--heartbeat 30s" --profile prof/

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

func parseOptions(args []string) (options, error) {
	var o options
	var help, showVersion bool
	fs := pflag.NewFlagSet("hubbench", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are one line, from run
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.BoolVarP(&help, "help", "h", false, "print this help and exit")
	fs.BoolVar(&showVersion, "version", false, "print the version (from the build information) and exit")
	fs.IntVar(&o.sessions, "sessions", 20000, "concurrent sessions to hold")
	fs.IntVar(&o.perConn, "per-conn", 100, "sessions sharing one client connection (HTTP/2 streams; client.WithConn); 1: one connection per session, as devices connect (each a descriptor in hubbench and one in hubd: N up to the open-file limit less 64)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connects in flight while ramping up")
	kicks := fs.String("kicks", "auto", "kicks to time (auto: the smaller of 1000 and --sessions - 1)")
	fs.IntVar(&o.fanouts, "fanouts", 5, "notify-all rounds to time")
	fs.BoolVar(&o.storm, "storm", true, "end with a reconnect storm: SIGTERM hubd, restart it, time until every session resumed (--storm=false skips it)")
	fs.StringVar(&o.hubdPath, "hubd", "", "hubd binary (default: build ./cmd/hubd into a temporary directory)")
	fs.StringVar(&o.data, "data", "", "hubd data directory (default: a temporary one, removed at the end)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&o.hubdArgs, "hubd-args", "", "extra hubd flags, space separated")
	fs.StringVar(&o.profile, "profile", "", "save profiles into this directory (go tool pprof): hubd's heap and goroutines with every session connected, and CPU of hubd and of hubbench's clients during the connects, kicks and fan-out")
	fs.StringVar(&o.transport, "transport", "grpc", "how sessions connect: grpc (hub/client, --per-conn sessions per connection) or ws (one WebSocket connection each, subprotocol sessionledger.v1+proto; --per-conn is 1)")
	fs.StringVar(&o.wsAck, "ws-ack", "pong", "with --transport ws, when clients ack (cumulatively): pong (the highest with each Pong, as the JavaScript client does), each (one per notification, as hub/client), or a duration after the first unacked notification")
	if err := fs.Parse(args); err != nil {
		return o, fmt.Errorf("%v (see hubbench --help)", err)
	}
	switch {
	case help:
		return o, errHelp{usageHead + fs.FlagUsages()}
	case showVersion:
		return o, errHelp{version.Line("hubbench") + "\n"}
	case fs.NArg() > 0:
		return o, fmt.Errorf("stray argument %q: hubbench takes only flags (see hubbench --help)", fs.Arg(0))
	}
	switch o.wsAck {
	case "pong":
		o.wsAckEvery = -1
	case "each":
		o.wsAckEvery = 0
	default:
		d, err := time.ParseDuration(o.wsAck)
		if err != nil || d <= 0 {
			return o, fmt.Errorf("--ws-ack %q: want pong, each or a positive duration (see hubbench --help)", o.wsAck)
		}
		o.wsAckEvery = d
	}
	switch o.transport {
	case "grpc":
	case "ws":
		o.perConn = 1
	default:
		return o, fmt.Errorf("--transport %q: want grpc or ws (see hubbench --help)", o.transport)
	}
	if *kicks == "auto" {
		o.kicks = min(1000, o.sessions-1)
	} else if n, err := strconv.Atoi(*kicks); err == nil {
		o.kicks = n
	} else {
		return o, fmt.Errorf("--kicks %q: want a number or auto (see hubbench --help)", *kicks)
	}
	if o.sessions <= 0 || o.perConn <= 0 || o.concurrency <= 0 || o.kicks < 0 || o.kicks >= o.sessions || o.fanouts < 0 {
		return o, errors.New("--sessions, --per-conn and --concurrency must be positive, and 0 <= --kicks < --sessions (see hubbench --help)")
	}
	return o, nil
}

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
	if o.hubdPath == "" {
		dir, err := os.MkdirTemp("", "hubbench-bin-")
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		o.hubdPath = filepath.Join(dir, "hubd")
		fmt.Fprintln(os.Stderr, "building hubd ...")
		if out, err := exec.Command("go", "build", "-o", o.hubdPath, "github.com/sessionledger/sessionledger/cmd/hubd").CombinedOutput(); err != nil {
			return fmt.Errorf("build hubd (run inside the repository or pass --hubd): %v\n%s", err, out)
		}
		b.o.hubdPath = o.hubdPath
	}
	b.data = o.data
	if b.data == "" {
		dir, err := os.MkdirTemp("", "hubbench-data-")
		if err != nil {
			return err
		}
		cleanup = append(cleanup, func() { os.RemoveAll(dir) })
		b.data = dir
	}
	// A fixed port, so the clients find hubd again after the storm restart.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.listen = l.Addr().String()
	l.Close()
	if o.transport == "ws" {
		wl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		b.wsListen = wl.Addr().String()
		wl.Close()
	}
	if err := b.startHubd(); err != nil {
		return err
	}
	cleanup = append(cleanup, b.stopHubd)
	tok, err := hubapi.FirstAdminToken(filepath.Join(b.data, hubapi.AdminTokenFile))
	if err != nil {
		return err
	}
	b.token = tok

	nconn := (o.sessions + o.perConn - 1) / o.perConn
	grpcConns := nconn
	if o.transport == "ws" {
		grpcConns = 1 // for the Admin API only
	}
	// What hub/client gives the connections it dials itself (WithConn
	// leaves that to the application): keepalive, and gRPC's reconnect
	// backoff capped at the client's Backoff.Max.
	for range grpcConns {
		c, err := grpc.NewClient(b.listen, append(client.DialOptions(client.Backoff{}),
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
	cleanup = append(cleanup, b.closeSessions) // before the connections close and hubd stops
	b.admin = hubpb.NewAdminClient(b.conns[0])
	b.res.Transport, b.res.Sessions, b.res.Connections = o.transport, o.sessions, nconn

	time.Sleep(time.Second)
	base := b.memory()
	b.res.Memory.BaselineRSS, b.res.Memory.BaselineHeap, b.res.Memory.BaselineAnon = base.rss, base.heap, base.anon
	b.res.Memory.BaselineStack, b.res.Memory.BaselineGor = base.stack, base.goroutines

	if err := b.connectAll(); err != nil {
		return err
	}
	// Dial returns at the Welcome; OnConnect, which counts a session
	// live, runs on the client's dispatcher just after.
	if err := b.waitAllLive("after connecting", time.Minute); err != nil {
		return err
	}
	time.Sleep(2 * time.Second) // let the ramp's garbage go and the sessions settle
	mem := b.memory()
	if o.profile != "" {
		if err := b.saveProfiles(o.profile); err != nil {
			return err
		}
	}
	m := &b.res.Memory
	m.RSS, m.RSSAnon, m.RSSFile, m.Heap, m.Stack, m.Goroutines = mem.rss, mem.anon, mem.file, mem.heap, mem.stack, mem.goroutines
	n := float64(b.live.Load())
	m.RSSPerSession = float64(int64(mem.rss)-int64(m.BaselineRSS)) / n
	m.AnonPerSession = float64(int64(mem.anon)-int64(m.BaselineAnon)) / n
	m.HeapPerSession = float64(int64(mem.heap)-int64(m.BaselineHeap)) / n
	m.StackPerSession = float64(int64(mem.stack)-int64(m.BaselineStack)) / n
	m.GoroutinesPerSs = float64(int64(mem.goroutines)-int64(m.BaselineGor)) / n
	b.printf("memory: hubd RSS %.1f MiB (anon %.1f, file %.1f; baseline %.1f), heap %.1f MiB (baseline %.1f), stacks %.1f MiB (baseline %.1f), %d goroutines (baseline %d)",
		mib(mem.rss), mib(mem.anon), mib(mem.file), mib(m.BaselineRSS), mib(mem.heap), mib(m.BaselineHeap), mib(mem.stack), mib(m.BaselineStack), mem.goroutines, m.BaselineGor)

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
