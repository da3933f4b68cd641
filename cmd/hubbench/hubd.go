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
	"syscall"
	"time"
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
	nconn := (b.o.sessions + b.o.perConn - 1) / b.o.perConn
	if need := uint64(nconn + fdsBesidesConns); need > rl.Cur {
		return fmt.Errorf("%d sessions at %d per connection are %d connections: about %d open files in hubbench and as many in hubd, over the limit of %d (at most %d connections here); raise --per-conn or the hard limit (ulimit -Hn)",
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

// startHubd starts hubd on b.listen and waits until it serves.
func (b *bench) startHubd() error {
	args := []string{"--data", b.data, "--listen", b.listen, "--metrics", "127.0.0.1:0", "--log-format", "json", "--pprof",
		"--max-sessions", strconv.Itoa(2 * b.o.sessions), "--shutdown-timeout", "120s",
		// --per-conn sessions share a connection, and the first one also
		// carries the admin calls.
		"--max-streams-per-conn", strconv.Itoa(max(256, b.o.perConn+64))}
	if b.wsListen != "" {
		args = append(args, "--ws-listen", b.wsListen, "--ws-demo=false")
	}
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

// cpuProfile profiles a phase, in hubd (its /debug/pprof/profile for
// seconds) and in hubbench itself (the clients: they share the machine), into
// hubd-cpu-NAME.pprof and hubbench-cpu-NAME.pprof. The returned func waits
// for hubd's profile to finish and stops hubbench's.
func (b *bench) cpuProfile(name string, seconds int) func() {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		res, err := b.http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.metrics, seconds))
		if err != nil {
			b.printf("cpu profile: %v", err)
			return
		}
		defer res.Body.Close()
		f, err := os.Create(filepath.Join(b.o.profile, "hubd-cpu-"+name+".pprof"))
		if err != nil {
			return
		}
		_, _ = io.Copy(f, res.Body)
		f.Close()
	}()
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
		<-done
		b.printf("cpu profiles of %s (%.0fs) saved", name, time.Since(start).Seconds())
	}
}

// cpuTimes returns the CPU time hubd and hubbench (the clients) have used
// so far, user and system: phases report their difference, which the
// other load on a shared machine does not inflate as it does wall time.
func (b *bench) cpuTimes() (hubd, clients time.Duration) {
	if f, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", b.hubd.Process.Pid)); err == nil {
		// Fields after the command (which may hold spaces) in parentheses:
		// utime and stime are the 14th and 15th fields of the line.
		if i := strings.LastIndexByte(string(f), ')'); i > 0 {
			fs := strings.Fields(string(f[i+1:]))
			if len(fs) > 12 {
				u, _ := strconv.ParseUint(fs[11], 10, 64)
				s, _ := strconv.ParseUint(fs[12], 10, 64)
				hubd = time.Duration(u+s) * time.Second / clockTicks
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
