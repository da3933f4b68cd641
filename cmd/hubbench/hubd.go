package main

// hubd as a child process: its file limits, start and stop, memory and profiles.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

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
	nconn := b.o.connections()
	if need := uint64(nconn + fdsBesidesConns); need > rl.Cur {
		return fmt.Errorf("%d sessions at %d per connection are %d connections: about %d open files in hubbench and as many in hubd, over the limit of %d (at most %d connections here); raise --per-conn (single mode), lower --sessions or raise the hard limit (ulimit -Hn)",
			b.o.sessions, b.o.perConn, nconn, need, rl.Cur, int(rl.Cur)-fdsBesidesConns)
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

// node is one hubd: a child process hubbench started (single mode,
// --cluster) or a running node it was given (--addrs, where only listen is
// known).
type node struct {
	name    string // its --node (cluster mode)
	data    string
	listen  string // gRPC address
	metrics string // metrics and pprof address, once it listens
	nats    string // its embedded NATS server's client URL (--cluster)
	flags   []string

	cmd   *exec.Cmd
	done  chan struct{} // closed once hubd exited and its log is closed
	ready chan string   // its metrics address, once it listens
	log   string

	conn  *grpc.ClientConn // for the Admin API (cluster modes)
	admin hubpb.AdminClient
}

// started reports whether hubbench runs this node's process.
func (n *node) started() bool { return n.cmd != nil }

// label names the node in the output.
func (n *node) label() string {
	if n.name != "" {
		return n.name
	}
	return n.listen
}

// startHubd starts n's hubd and waits until it serves.
func (b *bench) startHubd(n *node) error {
	if err := b.launch(n); err != nil {
		return err
	}
	return b.waitListening(n, 120*time.Second)
}

// launch starts n's hubd on n.listen; waitListening waits for it.
func (b *bench) launch(n *node) error {
	args := []string{"--data", n.data, "--listen", n.listen, "--metrics", "127.0.0.1:0", "--log-format", "json", "--pprof",
		"--max-sessions", strconv.Itoa(2 * b.o.sessions), "--shutdown-timeout", "120s",
		// --per-conn sessions share a connection, and the first one also
		// carries the admin calls.
		"--max-streams-per-conn", strconv.Itoa(max(256, b.o.perConn+64))}
	args = append(args, n.flags...)
	if b.wsListen != "" {
		args = append(args, "--ws-listen", b.wsListen, "--ws-demo=false")
	}
	if b.o.hubdArgs != "" {
		args = append(args, strings.Fields(b.o.hubdArgs)...)
	}
	n.log = filepath.Join(n.data, "hubd.log")
	lf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
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
	n.cmd, n.done, n.ready = cmd, make(chan struct{}), make(chan string, 1)
	done, ready := n.done, n.ready
	// This goroutine owns the log file of this hubd run: it copies hubd's
	// stderr into it until hubd exits, then closes it (a restart opens
	// its own).
	go func() {
		defer close(done)
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
	return nil
}

// waitListening waits until n's hubd logs that it listens, at most d; a
// hubd that does not is killed.
func (b *bench) waitListening(n *node, d time.Duration) error {
	select {
	case n.metrics = <-n.ready:
		return nil
	case <-n.done:
		return fmt.Errorf("hubd %s exited at start; see %s", n.label(), n.log)
	case <-time.After(d):
		_ = n.cmd.Process.Kill()
		<-n.done
		return fmt.Errorf("hubd %s did not start within %s; see %s", n.label(), d, n.log)
	}
}

// stopHubd stops n's hubd with SIGTERM (SIGKILL after 60 s) and waits for
// it; a node that exited, or that hubbench did not start, is left alone.
func (b *bench) stopHubd(n *node) {
	if !n.started() {
		return
	}
	select {
	case <-n.done:
	default:
		_ = n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.done:
		case <-time.After(60 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
	}
}

// stopAll stops every node hubbench started, at once.
func (b *bench) stopAll() {
	var wg sync.WaitGroup
	for _, n := range b.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.stopHubd(n)
		}()
	}
	wg.Wait()
}

// memstat is what memory reads from hubd.
type memstat struct {
	rss, anon, file, heap, stack, goroutines uint64
}

func (m memstat) add(o memstat) memstat {
	return memstat{m.rss + o.rss, m.anon + o.anon, m.file + o.file, m.heap + o.heap, m.stack + o.stack, m.goroutines + o.goroutines}
}

// memory returns the sum of nodeMemory over the nodes hubbench started.
func (b *bench) memory() (m memstat) {
	for _, n := range b.nodes {
		if n.started() {
			m = m.add(b.nodeMemory(n))
		}
	}
	return m
}

// nodeMemory returns n's RSS (in all, anonymous, and file-backed: the
// ledger's mmap), its live heap after a forced GC, goroutine stacks, and
// its goroutine count.
func (b *bench) nodeMemory(n *node) (m memstat) {
	if f, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid)); err == nil {
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
		if res, err := b.http.Get("http://" + n.metrics + "/debug/pprof/heap?gc=1"); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	res, err := b.http.Get("http://" + n.metrics + "/debug/pprof/heap?gc=1&debug=1")
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
	if res, err := b.http.Get("http://" + n.metrics + "/metrics"); err == nil {
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

// profilePrefix is how n's profile files begin: hubd-, or hubd-NODE- in
// cluster mode.
func (n *node) profilePrefix() string {
	if n.name != "" {
		return "hubd-" + n.name + "-"
	}
	return "hubd-"
}

// saveProfiles writes every started node's heap and goroutine profiles
// into dir.
func (b *bench) saveProfiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, n := range b.nodes {
		if !n.started() {
			continue
		}
		for name, path := range map[string]string{"heap.pprof": "/debug/pprof/heap", "goroutine.pprof": "/debug/pprof/goroutine"} {
			if err := b.savePprof(n, path, filepath.Join(dir, n.profilePrefix()+name)); err != nil {
				return err
			}
		}
	}
	b.printf("profiles saved in %s", dir)
	return nil
}

func (b *bench) savePprof(n *node, path, file string) error {
	res, err := b.http.Get("http://" + n.metrics + path)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, res.Body)
	return errors.Join(err, f.Close())
}

// cpuProfile profiles a phase, in every started node (its
// /debug/pprof/profile for seconds, into hubd[-NODE]-cpu-NAME.pprof) and in
// hubbench itself (the clients: they share the machine), into
// hubbench-cpu-NAME.pprof. The returned func waits for the nodes' profiles
// to finish and stops hubbench's.
func (b *bench) cpuProfile(name string, seconds int) func() {
	var wg sync.WaitGroup
	start := time.Now()
	for _, n := range b.nodes {
		if !n.started() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := b.savePprof(n, fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds), filepath.Join(b.o.profile, n.profilePrefix()+"cpu-"+name+".pprof")); err != nil {
				b.printf("cpu profile of %s: %v", n.label(), err)
			}
		}()
	}
	own, err := os.Create(filepath.Join(b.o.profile, "hubbench-cpu-"+name+".pprof"))
	if err == nil && pprof.StartCPUProfile(own) != nil {
		own.Close()
		own = nil
	}
	return func() {
		if own != nil {
			pprof.StopCPUProfile()
			own.Close()
		}
		wg.Wait()
		b.printf("cpu profiles of %s (%.0fs) saved", name, time.Since(start).Seconds())
	}
}

// cpuTimes returns the CPU time the started hubd nodes (together) and
// hubbench (the clients) have used so far, user and system: phases report
// their difference, which the other load on a shared machine does not
// inflate as it does wall time.
func (b *bench) cpuTimes() (hubd, clients time.Duration) {
	for _, n := range b.nodes {
		if !n.started() {
			continue
		}
		if f, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid)); err == nil {
			// Fields after the command (which may hold spaces) in
			// parentheses: utime and stime are the 14th and 15th fields.
			if i := strings.LastIndexByte(string(f), ')'); i > 0 {
				fs := strings.Fields(string(f[i+1:]))
				if len(fs) > 12 {
					u, _ := strconv.ParseUint(fs[11], 10, 64)
					s, _ := strconv.ParseUint(fs[12], 10, 64)
					hubd += time.Duration(u+s) * time.Second / clockTicks
				}
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		clients = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return hubd, clients
}

// clockTicks is the unit of /proc/PID/stat's times (USER_HZ, 100 on Linux).
const clockTicks = 100
