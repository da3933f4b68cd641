// Command hubbench is the load benchmark for hubd. It starts hubd as a child
// process on loopback (every connect and kick durable in its ledger, as in
// production), holds N concurrent sessions against it, and measures the
// connect rate, hubd's memory per idle session, kick latency from the
// Admin.Kick call to the client seeing its stream end, notification
// fan-out to all sessions, and a reconnect storm after a shutdown.
//
// The sessions are hub/client clients, as an application holds them
// (auto-ack, reconnect as advised, with the client's jittered backoff),
// --per-conn of them sharing one gRPC connection (client.WithConn). Kicked
// sessions resume; fan-out and storm wait until all N are live again.
//
//	go run ./cmd/hubbench --sessions 20000 --json bench.json
//
// See docs/performance.md for figures.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
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
}

type bench struct {
	o        options
	data     string
	listen   string
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
	Sessions    int `json:"sessions"`
	Connections int `json:"connections"`
	Connect     struct {
		Seconds    float64 `json:"seconds"`
		PerSecond  float64 `json:"per_second"`
		Failures   int     `json:"failures"`
		FirstError string  `json:"first_error,omitempty"`
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

func main() {
	var o options
	fs := flag.NewFlagSet("hubbench", flag.ExitOnError)
	fs.IntVar(&o.sessions, "sessions", 20000, "concurrent sessions to hold")
	fs.IntVar(&o.perConn, "per-conn", 100, "sessions sharing one client connection (HTTP/2 streams; client.WithConn)")
	fs.IntVar(&o.concurrency, "concurrency", 64, "connects in flight while ramping up")
	fs.IntVar(&o.kicks, "kicks", -1, "kicks to time (default min(1000, --sessions - 1))")
	fs.IntVar(&o.fanouts, "fanouts", 5, "notify-all rounds to time")
	fs.BoolVar(&o.storm, "storm", true, "end with a reconnect storm: SIGTERM hubd, restart it, time until every session resumed")
	fs.StringVar(&o.hubdPath, "hubd", "", "hubd binary (default: build ./cmd/hubd into a temporary directory)")
	fs.StringVar(&o.data, "data", "", "hubd data directory (default: a temporary one, removed at the end)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the result as JSON to this file")
	fs.StringVar(&o.hubdArgs, "hubd-args", "", "extra hubd flags, space separated")
	fs.StringVar(&o.profile, "profile", "", "save hubd's heap and goroutine profiles with every session connected into this directory (go tool pprof)")
	_ = fs.Parse(os.Args[1:])
	if o.kicks == -1 {
		o.kicks = min(1000, o.sessions-1)
	}
	if o.sessions <= 0 || o.perConn <= 0 || o.concurrency <= 0 || o.kicks < 0 || o.kicks >= o.sessions || o.fanouts < 0 {
		fmt.Fprintln(os.Stderr, "hubbench: --sessions, --per-conn and --concurrency must be positive, 0 <= --kicks < --sessions")
		os.Exit(2)
	}
	if err := runBench(o); err != nil {
		fmt.Fprintf(os.Stderr, "hubbench: %v\n", err)
		os.Exit(1)
	}
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
	if err := b.startHubd(); err != nil {
		return err
	}
	cleanup = append(cleanup, b.stopHubd)
	tok, err := hub.FirstAdminToken(filepath.Join(b.data, hub.AdminTokenFile))
	if err != nil {
		return err
	}
	b.token = tok

	nconn := (o.sessions + o.perConn - 1) / o.perConn
	// What hub/client gives the connections it dials itself (WithConn
	// leaves that to the application): keepalive, and gRPC's reconnect
	// backoff capped at the client's Backoff.Max.
	for range nconn {
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
	b.res.Sessions, b.res.Connections = o.sessions, nconn

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

// fdsBesidesConns is a generous count of the files either process holds
// besides its connections: the ledger, listeners, pipes, log, metrics.
const fdsBesidesConns = 64

// raiseFileLimit sets the open-file soft limit to the hard limit, which
// hubd inherits, and fails early if the connections cannot fit: each one
// is a file in hubbench and another in hubd.
//
// Go raises its own soft limit at start but restores the original one for
// the processes it starts; an explicit Setrlimit is what hubd inherits.
// The original soft limit is what a child shell reports before that.
func (b *bench) raiseFileLimit() error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("open-file limit: %w", err)
	}
	before := rl.Cur
	if out, err := exec.Command("sh", "-c", "ulimit -Sn").Output(); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64); err == nil {
			before = n
		}
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raise the open-file limit to %d: %w", rl.Max, err)
	}
	m := &b.res.Machine
	m.FDLimitBefore, m.FDLimit = before, rl.Cur
	if before < rl.Cur {
		b.printf("open-file limit raised from %d to %d (the hard limit; hubd inherits it)", before, rl.Cur)
	} else {
		b.printf("open-file limit %d (already the hard limit)", rl.Cur)
	}
	nconn := (b.o.sessions + b.o.perConn - 1) / b.o.perConn
	if need := uint64(nconn + fdsBesidesConns); need > rl.Cur {
		return fmt.Errorf("%d sessions at %d per connection are %d connections: about %d open files in hubbench and as many in hubd, over the limit of %d; raise --per-conn or the hard limit (ulimit -Hn)",
			b.o.sessions, b.o.perConn, nconn, need, rl.Cur)
	}
	// Both processes draw on the system's table of open files.
	if f, err := os.ReadFile("/proc/sys/fs/file-nr"); err == nil {
		if fields := strings.Fields(string(f)); len(fields) == 3 {
			used, _ := strconv.ParseUint(fields[0], 10, 64)
			maxFiles, _ := strconv.ParseUint(fields[2], 10, 64)
			if need := 2 * uint64(nconn+fdsBesidesConns); maxFiles > used && need > maxFiles-used {
				return fmt.Errorf("%d connections need about %d open files in hubbench and hubd together; the system has %d left (fs.file-max %d); raise --per-conn",
					nconn, need, maxFiles-used, maxFiles)
			}
		}
	}
	return nil
}

// startHubd starts hubd on b.listen and waits until it serves.
func (b *bench) startHubd() error {
	args := []string{"--data", b.data, "--listen", b.listen, "--metrics", "127.0.0.1:0", "--log-format", "json", "--pprof",
		"--max-sessions", strconv.Itoa(2 * b.o.sessions), "--shutdown-timeout", "120s",
		// --per-conn sessions share a connection, and the first one also
		// carries the admin calls.
		"--max-streams-per-conn", strconv.Itoa(max(256, b.o.perConn+64))}
	if b.o.hubdArgs != "" {
		args = append(args, strings.Fields(b.o.hubdArgs)...)
	}
	lf, err := os.OpenFile(filepath.Join(b.data, "hubd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(b.o.hubdPath, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		lf.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return err
	}
	b.hubd, b.hubdDone = cmd, make(chan struct{})
	ready := make(chan string, 1)
	// This goroutine owns the log file of this hubd run: it copies hubd's
	// stderr into it until hubd exits, then closes it (a restart opens
	// its own).
	go func() {
		defer close(b.hubdDone)
		defer lf.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(lf, line)
			var l struct{ Msg, Metrics string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "hubd listening" {
				select {
				case ready <- l.Metrics:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case b.metrics = <-ready:
		return nil
	case <-b.hubdDone:
		return fmt.Errorf("hubd exited at start; see %s", lf.Name())
	case <-time.After(120 * time.Second):
		_ = cmd.Process.Kill()
		<-b.hubdDone
		return errors.New("hubd did not start within 120s")
	}
}

func (b *bench) stopHubd() {
	if b.hubd == nil {
		return
	}
	select {
	case <-b.hubdDone:
	default:
		_ = b.hubd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.hubdDone:
		case <-time.After(60 * time.Second):
			_ = b.hubd.Process.Kill()
			<-b.hubdDone
		}
	}
}

// memstat is what memory reads from hubd.
type memstat struct {
	rss, anon, file, heap, stack, goroutines uint64
}

// memory returns hubd's RSS (in all, anonymous, and file-backed: the
// ledger's mmap), its live heap after a forced GC, goroutine stacks, and
// its goroutine count.
func (b *bench) memory() (m memstat) {
	if f, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.hubd.Process.Pid)); err == nil {
		for _, line := range strings.Split(string(f), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "VmRSS":
				m.rss = kb * 1024
			case "RssAnon":
				m.anon = kb * 1024
			case "RssFile":
				m.file = kb * 1024
			}
		}
	}
	// /debug/pprof/heap?gc=1&debug=1 runs a GC first and ends with the
	// runtime.MemStats fields. Idle goroutines' stacks shrink by half per
	// GC cycle when mostly unused; an idle hubd runs GCs anyway (pings
	// make garbage), so measure after a few, as in a steady state.
	for range 3 {
		if res, err := b.http.Get("http://" + b.metrics + "/debug/pprof/heap?gc=1"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	res, err := b.http.Get("http://" + b.metrics + "/debug/pprof/heap?gc=1&debug=1")
	if err == nil {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "# HeapAlloc = "); ok {
				m.heap, _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			}
			if v, ok := strings.CutPrefix(sc.Text(), "# Stack = "); ok {
				inuse, _, _ := strings.Cut(v, " ")
				m.stack, _ = strconv.ParseUint(inuse, 10, 64)
			}
		}
		res.Body.Close()
	}
	if res, err := b.http.Get("http://" + b.metrics + "/metrics"); err == nil {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				m.goroutines = uint64(f)
			}
		}
		res.Body.Close()
	}
	return m
}

// connectAll dials every session through hub/client, o.concurrency at a
// time, each on its group's shared connection.
func (b *bench) connectAll() error {
	n := b.o.sessions
	b.sessions = make([]*sess, n)
	sem := make(chan struct{}, b.o.concurrency)
	var wg sync.WaitGroup
	var failures atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	for i := range n {
		s := &sess{b: b, user: fmt.Sprintf("bench-user-%06d", i), conn: b.conns[i%len(b.conns)]}
		b.sessions[i] = s
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := s.dial(ctx); err != nil {
				failures.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
		if (i+1)%5000 == 0 {
			b.printf("connect: %d sessions requested (%d live)", i+1, b.live.Load())
		}
	}
	wg.Wait() // each Dial is bounded by its ctx
	d := time.Since(start)
	c := &b.res.Connect
	c.Seconds, c.PerSecond, c.Failures = d.Seconds(), float64(n)/d.Seconds(), int(failures.Load())
	if v := firstErr.Load(); v != nil {
		c.FirstError = v.(string)
	}
	b.printf("connect: %d sessions in %.2fs = %.0f/s (%d failed)", n-c.Failures, d.Seconds(), c.PerSecond, c.Failures)
	if c.Failures > 0 {
		return fmt.Errorf("%d connects failed, first: %s", c.Failures, c.FirstError)
	}
	return nil
}

// waitAllLive waits until every session is live again (kicked ones
// resume after the client's backoff), at most d.
func (b *bench) waitAllLive(what string, d time.Duration) error {
	n := int64(len(b.sessions))
	deadline := time.Now().Add(d)
	for b.live.Load() < n {
		if b.gaveUp.Load() > 0 {
			return fmt.Errorf("%s: %d clients gave up, first: %v", what, b.gaveUp.Load(), b.gaveUpWhy.Load())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: only %d of %d sessions live after %s", what, b.live.Load(), n, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// closeSessions closes every client (Goodbye, recorded as client_closed),
// 256 at a time, and waits for them.
func (b *bench) closeSessions() {
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, s := range b.sessions {
		c := s.client()
		if c == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close()
			<-sem
		}()
	}
	wg.Wait()
}

// clientStats sums the clients' own counters.
func (b *bench) clientStats() {
	cs := &b.res.Clients
	for _, s := range b.sessions {
		if c := s.client(); c != nil {
			st := c.Stats()
			cs.Connects += st.Connects
			cs.Resumes += st.Resumes
			cs.Delivered += st.Delivered
			cs.Redelivered += st.Redelivered
			cs.Duplicates += st.Duplicates
		}
	}
	cs.FailedAttempts = b.failedAttempts.Load()
}

func (b *bench) adminCtx(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+b.token), cancel
}

// kickTimeout is how long a kick waits for its client to see the end;
// a kick that takes longer counts as kickTimeout in the percentiles.
const kickTimeout = 5 * time.Second

// kickAll kicks o.kicks distinct random sessions one after another and times
// each from the call to the moment its client sees the stream end. The
// kicks allow reconnecting: each kicked client resumes after its backoff,
// and the kicks go on meanwhile, so the others live at a kick are N-1 minus
// the few still on their way back (recorded per kick).
func (b *bench) kickAll() error {
	k := &b.res.Kick
	k.N = b.o.kicks
	if k.N == 0 {
		return nil
	}
	if err := b.waitAllLive("before the kicks", time.Minute); err != nil {
		return err
	}
	order := rand.Perm(len(b.sessions))[:k.N]
	if b.o.profile != "" {
		done := b.cpuProfile("hubd-cpu-kicks.pprof")
		defer done()
	}
	var calls, frames, ends []time.Duration
	var others []int
	var done []kickDone
	for _, i := range order {
		s := b.sessions[i]
		id, ended := s.current()
		if ended == nil {
			return fmt.Errorf("kick: session of %s is not live", s.user)
		}
		others = append(others, int(b.live.Load())-1)
		ctx, cancel := b.adminCtx(10 * time.Second)
		t0 := time.Now()
		rep, err := b.admin.Kick(ctx, &hubpb.KickRequest{SessionId: id, Reason: "hubbench", Mode: hubpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED})
		callDone := time.Now()
		cancel()
		if err != nil {
			return fmt.Errorf("kick %s: %w", id, err)
		}
		done = append(done, kickDone{seq: rep.GetSeq(), eventID: rep.GetEventId(), session: id})
		select {
		case <-ended:
			s.mu.Lock()
			ends = append(ends, s.endedAt.Sub(t0))
			if s.frameAt.After(t0) { // no frame: the stream ended without one
				frames = append(frames, s.frameAt.Sub(t0))
			}
			s.mu.Unlock()
		case <-time.After(kickTimeout):
			k.Timeouts++
			ends = append(ends, kickTimeout)
		}
		calls = append(calls, callDone.Sub(t0))
	}
	k.CallP50, k.CallP99 = pct(calls, 50), pct(calls, 99)
	k.FrameP50, k.FrameP99 = pct(frames, 50), pct(frames, 99)
	k.EndP50, k.EndP99, k.EndMax = pct(ends, 50), pct(ends, 99), pct(ends, 100)
	slices.Sort(others)
	k.LiveMin, k.LiveMedian = others[0], others[len(others)/2]
	if err := b.waitAllLive("after the kicks", time.Minute); err != nil {
		return err
	}
	k.LedgerSeq = b.headSeq()
	if err := b.kicksRecorded(done, 30*time.Second); err != nil {
		return fmt.Errorf("kick: not durable: %w", err)
	}
	k.Durable = true
	b.printf("kick: %d kicks with %d-%d others live (median %d): call p50 %.2fms p99 %.2fms; stream end p50 %.2fms p99 %.2fms max %.2fms (%d timeouts, counted as %s); all %d live again",
		k.N, k.LiveMin, len(b.sessions)-1, k.LiveMedian, k.CallP50, k.CallP99, k.EndP50, k.EndP99, k.EndMax, k.Timeouts, kickTimeout, len(b.sessions))
	return nil
}

// kickDone is what a kick's ActionReply said was recorded.
type kickDone struct {
	seq     uint64
	eventID string
	session string
}

// kicksRecorded checks in hubd's ledger, read back through its Audit
// service, that each kick is recorded at the seq its ActionReply gave, as
// the kick_requested of its session with the event id the reply gave, and
// that the session's end was recorded after it as caused by that kick.
// The ends are recorded as the sessions end, so it waits up to wait for
// the last of them.
func (b *bench) kicksRecorded(kicks []kickDone, wait time.Duration) error {
	if len(kicks) == 0 {
		return nil
	}
	ac, err := audit.NewClient(b.listen, b.token)
	if err != nil {
		return err
	}
	defer ac.Close()
	from := slices.MinFunc(kicks, func(a, c kickDone) int { return cmp.Compare(a.seq, c.seq) }).seq
	deadline := time.Now().Add(wait)
	for {
		bySeq := map[uint64]*ledger.Record{}
		ends := map[string][]*ledger.Record{}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := ac.Events(ctx, audit.Filter{Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED}},
			false, func(r *ledger.Record) error {
				if r.Seq < from {
					return nil
				}
				if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_KICK_REQUESTED {
					bySeq[r.Seq] = r
				} else {
					ends[r.Event.GetSession()] = append(ends[r.Event.GetSession()], r)
				}
				return nil
			})
		cancel()
		if err != nil {
			return fmt.Errorf("read the kicks back from hubd's ledger: %w", err)
		}
		problem := ""
		for _, k := range kicks {
			r := bySeq[k.seq]
			if r == nil || r.ID.String() != k.eventID || r.Event.GetSession() != k.session {
				problem = fmt.Sprintf("the kick of %s acknowledged as seq %d (%s) is not that kick_requested in the ledger", k.session, k.seq, k.eventID)
				break
			}
			ended := false
			for _, e := range ends[k.session] {
				d := e.Event.GetSessionDisconnected()
				if e.Seq > k.seq && d.GetCause() == eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED && bytes.Equal(d.GetCauseEventId(), r.ID[:]) {
					ended = true
					break
				}
			}
			if !ended {
				problem = fmt.Sprintf("no session_disconnected of %s caused by the kick at seq %d", k.session, k.seq)
				break
			}
		}
		if problem == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New(problem)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// headSeq reads the ledger head from hubd's metrics.
func (b *bench) headSeq() uint64 {
	res, err := b.http.Get("http://" + b.metrics + "/metrics")
	if err != nil {
		return 0
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "sessionledger_ledger_head_seq "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return uint64(f)
		}
	}
	return 0
}

// fanout notifies every live session o.fanouts times and times each round
// until every session has received it.
func (b *bench) fanout() error {
	f := &b.res.Fanout
	f.Rounds = b.o.fanouts
	if f.Rounds == 0 {
		return nil
	}
	if err := b.waitAllLive("before the fan-out", time.Minute); err != nil {
		return err
	}
	f.Sessions = int(b.live.Load())
	var rates []float64
	for r := range b.o.fanouts {
		before := b.delivered.Load()
		want := int64(f.Sessions)
		ctx, cancel := b.adminCtx(30 * time.Second)
		t0 := time.Now()
		_, err := b.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "bench", Payload: []byte(fmt.Sprintf(`{"round":%d}`, r))})
		cancel()
		if err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for b.delivered.Load()-before < want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		d := time.Since(t0)
		got := b.delivered.Load() - before
		if got < want {
			return fmt.Errorf("fan-out round %d: %d of %d sessions received it within 60s", r, got, want)
		}
		f.Seconds = append(f.Seconds, d.Seconds())
		rates = append(rates, float64(want)/d.Seconds())
	}
	if len(rates) > 0 {
		slices.Sort(rates)
		f.PerSecondMed = rates[len(rates)/2]
	}
	b.printf("fan-out: %d rounds to %d sessions: %v s; median %.0f deliveries/s", f.Rounds, f.Sessions, roundAll(f.Seconds), f.PerSecondMed)
	return nil
}

// reconnectStorm SIGTERMs hubd (every session gets server_shutdown with a
// jittered reconnect delay), restarts it on the same address and data, and
// waits until every session resumed.
func (b *bench) reconnectStorm() error {
	st := &b.res.Storm
	if err := b.waitAllLive("before the storm", time.Minute); err != nil {
		return err
	}
	n := len(b.sessions)
	st.Sessions = n
	b.storm.mu.Lock()
	b.storm.start = time.Now()
	b.storm.mu.Unlock()
	b.storm.on.Store(true)
	defer b.storm.on.Store(false)
	if err := b.hubd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-b.hubdDone:
	case <-time.After(150 * time.Second):
		return errors.New("hubd did not stop within 150s of SIGTERM")
	}
	st.ShutdownSec = time.Since(b.storm.start).Seconds()
	b.printf("storm: hubd stopped %.2fs after SIGTERM; restarting", st.ShutdownSec)
	t := time.Now()
	if err := b.startHubd(); err != nil {
		return err
	}
	st.RestartSec = time.Since(t).Seconds()
	deadline := time.Now().Add(180 * time.Second)
	for {
		b.storm.mu.Lock()
		got := len(b.storm.times)
		b.storm.mu.Unlock()
		if got >= n || time.Now().After(deadline) || b.gaveUp.Load() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.storm.mu.Lock()
	times := slices.Clone(b.storm.times)
	advice := slices.Clone(b.storm.advice)
	waits := slices.Clone(b.storm.waits)
	b.storm.mu.Unlock()
	st.Resumed = len(times)
	st.Retries = b.storm.retries.Load()
	if len(times) > 0 {
		st.AllResumedSec = slices.Max(times).Seconds()
		st.ResumeP10, st.ResumeP50, st.ResumeP90 = pct(times, 10)/1000, pct(times, 50)/1000, pct(times, 90)/1000
		st.PerSecond = make([]int, int(st.AllResumedSec)+1)
		for _, d := range times {
			st.PerSecond[int(d.Seconds())]++
		}
	}
	if len(advice) > 0 {
		st.AdviceMinMs = float64(slices.Min(advice).Microseconds()) / 1000
		st.AdviceMaxMs = float64(slices.Max(advice).Microseconds()) / 1000
		st.WaitMinMs = float64(slices.Min(waits).Microseconds()) / 1000
		st.WaitMaxMs = float64(slices.Max(waits).Microseconds()) / 1000
	}
	b.printf("storm: %d of %d resumed; all by %.2fs after SIGTERM (p10 %.2fs, p50 %.2fs, p90 %.2fs); %d failed attempts while hubd was down",
		st.Resumed, n, st.AllResumedSec, st.ResumeP10, st.ResumeP50, st.ResumeP90, st.Retries)
	if b.gaveUp.Load() > 0 {
		return fmt.Errorf("storm: %d clients gave up, first: %v", b.gaveUp.Load(), b.gaveUpWhy.Load())
	}
	if st.Resumed < n {
		return fmt.Errorf("storm: only %d of %d sessions resumed within 180s", st.Resumed, n)
	}
	return nil
}

// pct returns the p-th percentile of ds in milliseconds.
func pct(ds []time.Duration, p int) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func roundAll(fs []float64) []float64 {
	out := make([]float64, len(fs))
	for i, f := range fs {
		out[i] = float64(int(f*1000)) / 1000
	}
	return out
}

func (b *bench) summary(w io.Writer) {
	r := &b.res
	limit := fmt.Sprintf("fd limit %d", r.Machine.FDLimit)
	if r.Machine.FDLimitBefore < r.Machine.FDLimit {
		limit = fmt.Sprintf("fd limit raised from %d to %d", r.Machine.FDLimitBefore, r.Machine.FDLimit)
	}
	fmt.Fprintf(w, "\nhubbench: %d sessions over %d connections, hubd and clients on one machine (%d CPUs, %s, %s, %s)\n",
		r.Sessions, r.Connections, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, limit)
	fmt.Fprintf(w, "  connect     %.0f sessions/s (%d in %.2fs), every connect durable\n", r.Connect.PerSecond, r.Sessions, r.Connect.Seconds)
	fmt.Fprintf(w, "  memory      per idle session: %.1f KB RSS (%.1f KB anonymous; the rest is the ledger's mmap), %.1f KB Go heap, %.1f KB stacks, %.2f goroutines (hubd RSS %.0f MiB)\n",
		r.Memory.RSSPerSession/1024, r.Memory.AnonPerSession/1024, r.Memory.HeapPerSession/1024, r.Memory.StackPerSession/1024, r.Memory.GoroutinesPerSs, mib(r.Memory.RSS))
	fmt.Fprintf(w, "  baseline    one durable ledger append: p50 %.2f ms, p99 %.2f ms (same disk, same run)\n", r.Baseline.AppendP50, r.Baseline.AppendP99)
	if r.Kick.N > 0 {
		fmt.Fprintf(w, "  kick        Kick call -> client sees its stream end: p50 %.2f ms, p99 %.2f ms, max %.2f ms over %d kicks; %d-%d others live (median %d: kicked clients resume meanwhile)\n",
			r.Kick.EndP50, r.Kick.EndP99, r.Kick.EndMax, r.Kick.N, r.Kick.LiveMin, r.Sessions-1, r.Kick.LiveMedian)
		fmt.Fprintf(w, "              (Kick call returns p99 %.2f ms; Disconnect frame p99 %.2f ms; %d timeouts, counted as %s; p50 = %.1fx the baseline append, which a kick needs two of)\n",
			r.Kick.CallP99, r.Kick.FrameP99, r.Kick.Timeouts, kickTimeout, r.Kick.EndP50/max(r.Baseline.AppendP50, 0.001))
		if r.Kick.Durable {
			fmt.Fprintf(w, "              every kick read back from hubd's ledger at the seq its reply gave, with its session's end caused by it\n")
		}
	}
	if r.Fanout.Rounds > 0 {
		fmt.Fprintf(w, "  fan-out     %.0f deliveries/s (median of %d notify-all rounds to all %d sessions)\n",
			r.Fanout.PerSecondMed, r.Fanout.Rounds, r.Fanout.Sessions)
	}
	if r.Storm.Sessions > 0 {
		fmt.Fprintf(w, "  storm       all %d resumed %.2fs after SIGTERM (shutdown %.2fs, restart %.2fs); advice %.0f-%.0f ms, client waits %.0f-%.0f ms; resumes p10/p50/p90 %.2f/%.2f/%.2fs; per second %v; %d failed attempts\n",
			r.Storm.Resumed, r.Storm.AllResumedSec, r.Storm.ShutdownSec, r.Storm.RestartSec, r.Storm.AdviceMinMs, r.Storm.AdviceMaxMs,
			r.Storm.WaitMinMs, r.Storm.WaitMaxMs, r.Storm.ResumeP10, r.Storm.ResumeP50, r.Storm.ResumeP90, r.Storm.PerSecond, r.Storm.Retries)
	}
	c := &r.Clients
	fmt.Fprintf(w, "  clients     hub/client, %d per connection: %d connects (%d resumes), %d notifications delivered (%d redelivered), %d duplicates dropped, %d failed connect attempts\n",
		b.o.perConn, c.Connects, c.Resumes, c.Delivered, c.Redelivered, c.Duplicates, c.FailedAttempts)
}

// saveProfiles writes hubd's heap and goroutine profiles into dir.
func (b *bench) saveProfiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, path := range map[string]string{"hubd-heap.pprof": "/debug/pprof/heap", "hubd-goroutine.pprof": "/debug/pprof/goroutine"} {
		res, err := b.http.Get("http://" + b.metrics + path)
		if err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(dir, name))
		if err == nil {
			_, err = io.Copy(f, res.Body)
			err = errors.Join(err, f.Close())
		}
		res.Body.Close()
		if err != nil {
			return err
		}
	}
	b.printf("profiles saved in %s", dir)
	return nil
}

// cpuProfile starts a CPU profile of hubd (up to 60 s); the returned func
// stops it early by cancelling and waits for the file... profiles are cut
// by time, so it simply waits for the request to finish.
func (b *bench) cpuProfile(name string) func() {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		res, err := b.http.Get("http://" + b.metrics + "/debug/pprof/profile?seconds=8")
		if err != nil {
			b.printf("cpu profile: %v", err)
			return
		}
		defer res.Body.Close()
		f, err := os.Create(filepath.Join(b.o.profile, name))
		if err != nil {
			return
		}
		_, _ = io.Copy(f, res.Body)
		f.Close()
	}()
	return func() {
		<-done
		b.printf("cpu profile %s (%.0fs) saved", name, time.Since(start).Seconds())
	}
}

// baseline times 300 sequential durable appends to a fresh ledger next to
// hubd's data: what one fsynced event costs on this disk right now.
func (b *bench) baseline() error {
	dir, err := os.MkdirTemp(b.o.data, "hubbench-baseline-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := ledger.Open(filepath.Join(dir, "ledger.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	var ds []time.Duration
	for i := range 300 {
		ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: fmt.Sprintf("u%d", i), Device: "d",
			Session: fmt.Sprintf("s%d", i), Node: "bench", Actor: "bench", Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}
		t0 := time.Now()
		if _, err := store.Append(context.Background(), ev); err != nil {
			return err
		}
		ds = append(ds, time.Since(t0))
	}
	b.res.Baseline.AppendP50, b.res.Baseline.AppendP99 = pct(ds, 50), pct(ds, 99)
	b.printf("baseline: one durable append p50 %.2f ms, p99 %.2f ms", b.res.Baseline.AppendP50, b.res.Baseline.AppendP99)
	return nil
}
