// Package stallproxy is a test helper: a TCP proxy on 127.0.0.1 that can
// stop forwarding the connections it holds without closing them, so a
// client sees a connection go silent (half-open, a stalled middlebox), or
// hold what one connection's client sends and deliver it later, as a TCP
// path that stalls and comes back does.
package stallproxy

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
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
	// Hold: the client connections whose first bytes carry holdMark
	// are read from only while held is closed.
	holdMark []byte
	held     chan struct{}
}

// New starts a Proxy to target, closed when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	close(released)
	p := &Proxy{l: l, target: target, stalled: make(chan struct{}), held: released}
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
		go p.pump(in, out, stalled, true)
		go p.pump(out, in, stalled, false)
	}
}

// Addr is the address clients dial.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// pump copies from src to dst until either fails; a stalled pump drops
// what it reads and keeps the connection open. On what a client sends
// (fromClient) over a connection Mark names, while held, it reads nothing
// (looking again every holdPoll), so what the client sent waits in the
// kernels, to be delivered on Release.
func (p *Proxy) pump(src, dst net.Conn, stalled <-chan struct{}, fromClient bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	named := false
	for {
		if named {
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			<-held
			_ = src.SetReadDeadline(time.Now().Add(holdPoll))
		}
		n, err := src.Read(buf)
		if n > 0 {
			if fromClient && !named {
				p.mu.Lock()
				named = p.holdMark != nil && bytes.Contains(buf[:n], p.holdMark)
				p.mu.Unlock()
			}
			select {
			case <-stalled:
				continue
			default:
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		var ne net.Error
		if named && errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return
		}
	}
}

// holdPoll is how long a read of a held connection may still take what
// arrives after Hold.
const holdPoll = 20 * time.Millisecond

// Mark names, from now on, the connections Hold holds: those whose client
// sends mark (for a NATS client, its CONNECT's `"name":"..."`). Call it
// before the client connects.
func (p *Proxy) Mark(mark string) {
	p.mu.Lock()
	p.holdMark = []byte(mark)
	p.mu.Unlock()
}

// Hold stops reading what the marked connections' clients send, without
// dropping or closing anything, until Release, which delivers it all.
func (p *Proxy) Hold() {
	p.mu.Lock()
	p.held = make(chan struct{})
	p.mu.Unlock()
}

// Release undoes Hold.
func (p *Proxy) Release() {
	p.mu.Lock()
	select {
	case <-p.held:
	default:
		close(p.held)
	}
	p.mu.Unlock()
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
	p.Release()
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
