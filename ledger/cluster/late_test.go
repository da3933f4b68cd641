package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/internal/natstest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// holdProxy forwards TCP connections to a NATS server and can hold, without
// dropping or closing anything, what the client of one named connection
// sends: a TCP connection whose path stalls keeps what it was given in the
// kernels at both ends and delivers it, retransmitted, once the path is
// back, for as long as neither end gives the connection up (nats.go and
// nats-server call a connection stale only after their pings go
// unanswered: minutes by default).
type holdProxy struct {
	l      net.Listener
	target string
	name   []byte // a client connection whose CONNECT carries this is held

	mu    sync.Mutex
	held  chan struct{} // open while holding; closed by release
	conns []net.Conn
	wg    sync.WaitGroup
}

func newHoldProxy(t *testing.T, target, connName string) *holdProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{l: l, target: target, name: []byte(`"name":"` + connName + `"`)}
	released := make(chan struct{})
	close(released)
	p.held = released
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *holdProxy) url() string { return "nats://" + p.l.Addr().String() }

func (p *holdProxy) accept() {
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
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(in, out); in.Close() }()
		go func() { defer p.wg.Done(); p.pumpUp(in, out); out.Close() }()
	}
}

// pumpUp copies what the client sends; on the named connection, while
// held, it reads nothing (in steps of holdPoll), so what the client sent
// waits in the kernels, as on a path that stalled.
func (p *holdProxy) pumpUp(in, out net.Conn) {
	buf := make([]byte, 32<<10)
	named := false
	for {
		if named {
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			<-held
			_ = in.SetReadDeadline(time.Now().Add(holdPoll))
		}
		n, err := in.Read(buf)
		if n > 0 {
			named = named || bytes.Contains(buf[:n], p.name)
			if _, werr := out.Write(buf[:n]); werr != nil {
				return
			}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && named {
			continue
		}
		if err != nil {
			return
		}
	}
}

// holdPoll is how long a read of a held connection may still take what
// arrives after hold.
const holdPoll = 20 * time.Millisecond

// hold stops forwarding what the named connection's client sends;
// release forwards it all.
func (p *holdProxy) hold() {
	p.mu.Lock()
	p.held = make(chan struct{})
	p.mu.Unlock()
}

func (p *holdProxy) release() {
	p.mu.Lock()
	select {
	case <-p.held:
	default:
		close(p.held)
	}
	p.mu.Unlock()
}

func (p *holdProxy) close() {
	p.release()
	p.l.Close()
	p.mu.Lock()
	conns := p.conns
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

// TestLatePresumptionIsCaught: the publisher's connection stalls (its TCP
// path, not the process: nothing is closed and nothing reconnects) while
// the stream has its quorum. A publish sent on it is answered "outcome
// unknown" and, SettleAfter later, a record stamped after that makes the
// node presume it not recorded. Here SettleAfter (2 s) is shorter than the
// stall: when the path comes back, within the connection's ping timeout,
// the message reaches the leader and the stream records it. That is the
// limit of a presumption by time (SettleAfter must outlast what ends a
// stalled connection: DefaultSettleAfter is past NATS's ping timeouts);
// the node must notice the late record, say so and count it
// (Node.PresumedWrong), not stay silent.
func TestLatePresumptionIsCaught(t *testing.T) {
	srv := natstest.Cluster(t, 3)
	start := func(name, url string) *member {
		m := &member{name: name, dir: t.TempDir(), cfg: cluster.Config{
			Node: name, InstanceID: name + "-instance", Replicas: 3, URLs: []string{url},
			PublishTimeout: 500 * time.Millisecond, RetryFor: 1500 * time.Millisecond, SettleAfter: 2 * time.Second,
			Logger: slog.New(slog.DiscardHandler), StartTimeout: 30 * time.Second,
		}}
		if err := m.start(t); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.stop)
		return m
	}
	proxy := newHoldProxy(t, srv[0].URL[len("nats://"):], "hubd node-a publisher")
	a := start("node-a", proxy.url())
	b := start("node-b", srv[1].URL)
	if _, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "before")); err != nil {
		t.Fatal(err)
	}

	proxy.hold()
	time.Sleep(3 * holdPoll)
	late := event("u", "late")
	_, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, late)
	if !errors.Is(err, ledger.ErrOutcomeUnknown) {
		t.Fatalf("a publish on a stalled connection: %v; want outcome unknown", err)
	}
	if u := a.node.Unsettled(); !slices.Contains(u, late.UUID) {
		t.Fatalf("unsettled %v; want %s", u, late.UUID)
	}
	// Records stamped more than SettleAfter after the answer, stored on
	// node-a (its replicator's connection is not stalled).
	time.Sleep(a.cfg.SettleAfter + 500*time.Millisecond)
	st, err := b.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "other"))
	if err != nil {
		t.Fatal(err)
	}
	waitHead(t, []*member{a}, st[0].Seq)
	settled := !slices.Contains(a.node.Unsettled(), late.UUID)

	// The path comes back before either end gives the connection up.
	proxy.release()
	deadline := time.Now().Add(15 * time.Second)
	var at uint64
	for at == 0 && time.Now().Before(deadline) {
		st, err := b.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "after"))
		if err == nil {
			waitHead(t, []*member{a}, st[0].Seq)
		}
		if err := a.store.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
			if r.UUID == late.UUID {
				at = r.Seq
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !settled {
		t.Fatalf("message %s still unsettled after a record stamped more than SettleAfter (%s) after its answer; want it presumed not recorded", late.UUID, a.cfg.SettleAfter)
	}
	if at == 0 {
		t.Fatalf("the held message was not recorded within 15s of the release; want it recorded late, as a stalled connection delivers")
	}
	if got := a.node.PresumedWrong(); got != 1 {
		t.Fatalf("PresumedWrong() = %d after message %s, presumed not recorded, was recorded at seq %d; want 1", got, late.UUID, at)
	}
}
