// Command wslibbench measures the two WebSocket libraries hubd could use,
// github.com/coder/websocket and github.com/gorilla/websocket, in the shape
// hubd's WebSocket transport uses them: each server connection is read by
// its HTTP handler goroutine (the session's one long-lived goroutine), and
// writes come from short-lived goroutines (the session core's workers).
//
// It starts itself as a child server process per library (so the server's
// RSS is its own), connects N clients (one TCP connection each, gorilla's
// client for both, so only the server side differs), then measures the
// server: RSS, Go heap and goroutine stacks per idle connection, the
// connect rate, and broadcast fan-out (one 64-byte binary message to every
// connection, written by one short-lived goroutine per connection; median
// of 5 rounds). Libraries alternate ROUNDS times so noise hits both.
//
// It is a separate module so the project's go.mod carries only the library
// it chose:
//
//	cd internal/wslibbench && go run . -n 5000 -rounds 3
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
)

func main() {
	serve := flag.String("serve", "", "internal: run the server for this library")
	n := flag.Int("n", 5000, "connections")
	rounds := flag.Int("rounds", 3, "alternating rounds per library")
	flag.Parse()
	if *serve != "" {
		runServer(*serve)
		return
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	results := map[string][]result{}
	libs := []string{"gorilla", "gorilla-detached", "coder", "coder-detached"}
	for r := 0; r < *rounds; r++ {
		order := slices.Clone(libs)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, lib := range order {
			res, err := measure(lib, *n)
			if err != nil {
				fmt.Fprintln(os.Stderr, lib, err)
				os.Exit(1)
			}
			fmt.Printf("round %d %-8s connect %8.0f/s  rss/conn %6.2f KiB  heap/conn %5.2f KiB  stacks/conn %5.2f KiB  goroutines/conn %.2f  fan-out %9.0f msgs/s\n",
				r+1, lib, res.ConnectPerSec, res.RSSPerConn/1024, res.HeapPerConn/1024, res.StackPerConn/1024, res.GoroutinesPerConn, res.FanoutPerSec)
			results[lib] = append(results[lib], res)
		}
	}
	med := func(lib string, f func(result) float64) float64 {
		var xs []float64
		for _, r := range results[lib] {
			xs = append(xs, f(r))
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	fmt.Printf("\nmedians over %d rounds, N=%d     gorilla  gorilla-detached  coder  coder-detached\n", *rounds, *n)
	for _, row := range []struct {
		name string
		f    func(result) float64
	}{
		{"connect rate (/s)", func(r result) float64 { return r.ConnectPerSec }},
		{"RSS per idle connection (KiB)", func(r result) float64 { return r.RSSPerConn / 1024 }},
		{"Go heap per idle connection (KiB)", func(r result) float64 { return r.HeapPerConn / 1024 }},
		{"goroutine stacks per connection (KiB)", func(r result) float64 { return r.StackPerConn / 1024 }},
		{"fan-out (messages/s)", func(r result) float64 { return r.FanoutPerSec }},
	} {
		fmt.Printf("%-38s", row.name)
		for _, lib := range libs {
			fmt.Printf(" %10.2f", med(lib, row.f))
		}
		fmt.Println()
	}
}

type result struct {
	ConnectPerSec, RSSPerConn, HeapPerConn, StackPerConn, GoroutinesPerConn, FanoutPerSec float64
}

type stats struct {
	RSS, Heap, Stack uint64
	Goroutines       int
	Delivered        int64
}

func measure(lib string, n int) (result, error) {
	cmd := exec.Command(os.Args[0], "-serve", lib)
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return result{}, err
	}
	addr = strings.TrimSpace(addr)
	before, err := getStats(addr)
	if err != nil {
		return result{}, err
	}
	var res result
	conns := make([]*gorilla.Conn, n)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	var firstErr atomic.Value
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			// Wait for the server's hello so the connection is admitted.
			if _, _, err := c.ReadMessage(); err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return res, e.(error)
	}
	res.ConnectPerSec = float64(n) / time.Since(start).Seconds()
	time.Sleep(time.Second)
	idle, err := getStats(addr)
	if err != nil {
		return res, err
	}
	res.RSSPerConn = float64(idle.RSS-before.RSS) / float64(n)
	res.HeapPerConn = float64(idle.Heap-before.Heap) / float64(n)
	res.StackPerConn = float64(idle.Stack-before.Stack) / float64(n)
	res.GoroutinesPerConn = float64(idle.Goroutines-before.Goroutines) / float64(n)

	// Fan-out: each client reads one message per round.
	var got atomic.Int64
	var rates []float64
	for round := 0; round < 5; round++ {
		got.Store(0)
		done := make(chan struct{})
		var cw sync.WaitGroup
		for _, c := range conns {
			cw.Add(1)
			go func() {
				defer cw.Done()
				if _, _, err := c.ReadMessage(); err == nil {
					if got.Add(1) == int64(n) {
						close(done)
					}
				}
			}()
		}
		t0 := time.Now()
		resp, err := http.Post("http://"+addr+"/broadcast", "text/plain", nil)
		if err != nil {
			return res, err
		}
		resp.Body.Close()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			return res, fmt.Errorf("fan-out: %d of %d delivered", got.Load(), n)
		}
		rates = append(rates, float64(n)/time.Since(t0).Seconds())
		cw.Wait()
	}
	slices.Sort(rates)
	res.FanoutPerSec = rates[len(rates)/2]
	for _, c := range conns {
		c.Close()
	}
	return res, nil
}

func getStats(addr string) (stats, error) {
	resp, err := http.Get("http://" + addr + "/stats")
	if err != nil {
		return stats{}, err
	}
	defer resp.Body.Close()
	var s stats
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// conn is what the server writes to: one per library.
type conn interface {
	write(ctx context.Context, b []byte) error
}

type gorillaConn struct {
	c  *gorilla.Conn
	mu sync.Mutex
}

func (g *gorillaConn) write(_ context.Context, b []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.c.WriteMessage(gorilla.BinaryMessage, b)
}

type coderConn struct{ c *coder.Conn }

func (c coderConn) write(ctx context.Context, b []byte) error {
	return c.c.Write(ctx, coder.MessageBinary, b)
}

func runServer(lib string) {
	debug.SetGCPercent(100)
	var mu sync.Mutex
	conns := map[conn]struct{}{}
	up := gorilla.Upgrader{WriteBufferPool: &sync.Pool{}, CheckOrigin: func(*http.Request) bool { return true }}
	if strings.HasSuffix(lib, "-detached") {
		// Detached: the handler hands the connection to a goroutine of
		// its own and returns, so net/http frees its per-request state;
		// gorilla gets a small read buffer of its own.
		up.ReadBufferSize = 512
	}
	detach := func(fn func()) {
		if strings.HasSuffix(lib, "-detached") {
			go fn()
		} else {
			fn()
		}
	}
	mux := http.NewServeMux()
	hello := []byte("hello")
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		switch lib {
		case "gorilla", "gorilla-detached":
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			gc := &gorillaConn{c: c}
			if gc.write(nil, hello) != nil {
				return
			}
			mu.Lock()
			conns[gc] = struct{}{}
			mu.Unlock()
			detach(func() {
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						break
					}
				}
				mu.Lock()
				delete(conns, gc)
				mu.Unlock()
				c.Close()
			})
		case "coder", "coder-detached":
			c, err := coder.Accept(w, r, &coder.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			cc := coderConn{c}
			if cc.write(context.Background(), hello) != nil {
				return
			}
			mu.Lock()
			conns[cc] = struct{}{}
			mu.Unlock()
			detach(func() {
				for {
					if _, _, err := c.Read(context.Background()); err != nil {
						break
					}
				}
				mu.Lock()
				delete(conns, cc)
				mu.Unlock()
				c.CloseNow()
			})
		}
	})
	msg := make([]byte, 64)
	mux.HandleFunc("/broadcast", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		for c := range conns {
			go c.write(context.Background(), msg)
		}
		mu.Unlock()
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		runtime.GC()
		debug.FreeOSMemory()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(w).Encode(stats{RSS: rss(), Heap: ms.HeapInuse, Stack: ms.StackInuse, Goroutines: runtime.NumGoroutine()})
	})
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr().String())
	_ = http.Serve(ln, mux)
}

func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
