// Package stallproxy is a test helper: a TCP proxy on 127.0.0.1 that can
// stop forwarding the connections it holds without closing them, so a
// client sees a connection go silent (half-open, a stalled middlebox).
package stallproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections on 127.0.0.1 to a target and can stop
// forwarding the connections it holds without closing them: to the
// client, a connection that went silent (half-open, a stalled middlebox).
// Connections accepted after Stall are forwarded normally.
type Proxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   []net.Conn
	stalled chan struct{} // closed by stall: the held connections stop
	closed  bool
	cut     bool // Cut: new connections are closed at once, until Heal
}

// New starts a Proxy to target, closed when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l, target: target, stalled: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		if p.cut {
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		stalled := p.stalled
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pump(in, out, stalled)
		go p.pump(out, in, stalled)
	}
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// pump copies from src to dst until either fails or the connection is
// stalled; a stalled pump drops what it reads and keeps the connection
// open.
func (p *Proxy) pump(src, dst net.Conn, stalled <-chan struct{}) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		select {
		case <-stalled:
			continue
		default:
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// Stall stops forwarding on every connection accepted so far.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.stalled)
	p.stalled = make(chan struct{})
}

// Cut closes every connection held and closes new ones at once until
// Heal: to the client, the network between it and the target is down.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Heal forwards new connections again after Cut.
func (p *Proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection it holds. It is
// idempotent.
func (p *Proxy) Close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.l.Close()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}
