package cluster

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// liveness tells which nodes are alive from heartbeats on a core NATS
// subject (no JetStream, no Raft: a heartbeat needs no stream leader, so a
// leader election after a server died does not make every node look dead,
// as expiring entries of a replicated bucket would). Every node publishes
// its name every Heartbeat and hears every node's, its own included.
type liveness struct {
	n       *Node
	nc      *nats.Conn
	subject string

	mu    sync.Mutex
	heard map[string]time.Time // node -> when last heard
	// steady is since when this node has heard its own heartbeats without
	// a gap (zero after one): it judges others only once that is LostAfter.
	steady time.Time
	self   time.Time // when it last heard its own

	stop chan struct{}
	done chan struct{}
}

// livenessSubject is the subject heartbeats go on, one per stream, so
// clusters that share a NATS deployment do not hear each other.
func livenessSubject(stream string) string { return "sessionledger." + stream + ".alive" }

func startLiveness(n *Node) (*liveness, error) {
	nc, err := n.connect("liveness")
	if err != nil {
		return nil, err
	}
	l := &liveness{n: n, nc: nc, subject: livenessSubject(n.cfg.Stream), heard: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := nc.Subscribe(l.subject, l.hear); err != nil {
		nc.Close()
		return nil, fmt.Errorf("liveness: %w", err)
	}
	go l.loop()
	return l, nil
}

func (l *liveness) hear(m *nats.Msg) {
	name, now := string(m.Data), time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if name == l.n.cfg.Node {
		if l.steady.IsZero() || now.Sub(l.self) > 2*l.n.cfg.Heartbeat {
			l.steady = now // the first, or the first after a gap
		}
		l.self = now
		return
	}
	l.heard[name] = now
}

func (l *liveness) loop() {
	defer close(l.done)
	t := time.NewTicker(l.n.cfg.Heartbeat)
	defer t.Stop()
	for {
		_ = l.nc.Publish(l.subject, []byte(l.n.cfg.Node)) // a failure shows as a gap in our own
		select {
		case <-t.C:
		case <-l.stop:
			return
		}
	}
}

// judge reports whether this node may judge others now: it has heard its
// own heartbeats, without a gap, for LostAfter, and the last one lately.
func (l *liveness) judge(now time.Time) bool {
	return !l.steady.IsZero() && now.Sub(l.self) <= 2*l.n.cfg.Heartbeat && now.Sub(l.steady) >= l.n.cfg.LostAfter
}

// dead is Node.Dead's answer.
func (l *liveness) dead(names []string) ([]string, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.judge(now) {
		return nil, ErrUnsteady
	}
	var out []string
	for _, name := range names {
		if name == l.n.cfg.Node || slices.Contains(out, name) {
			continue
		}
		if at, ok := l.heard[name]; !ok || now.Sub(at) > l.n.cfg.LostAfter {
			out = append(out, name)
		}
	}
	return out, nil
}

// alive is Node.Alive's answer: this node and those heard within
// LostAfter, in order.
func (l *liveness) alive() []string {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	out := []string{l.n.cfg.Node}
	for name, at := range l.heard {
		if now.Sub(at) <= l.n.cfg.LostAfter {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (l *liveness) close() {
	close(l.stop)
	<-l.done
	l.nc.Close()
}
