package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/internal/testports"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/cluster"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// member is one node of a test cluster: a replica ledger and its node.
type member struct {
	name  string
	dir   string
	store *ledger.Store
	node  *cluster.Node
	cfg   cluster.Config
}

// testCluster starts n nodes with embedded NATS servers routed to each
// other, concurrently (a JetStream cluster needs them all to form).
func testCluster(t testing.TB, n int, opts ...func(*cluster.Config)) []*member {
	t.Helper()
	ports := testports.Ports(t, n)
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	ms := make([]*member, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range ms {
		dir := t.TempDir()
		m := &member{name: fmt.Sprintf("node-%c", 'a'+i), dir: dir}
		m.cfg = cluster.Config{
			Node: m.name, InstanceID: m.name + "-instance", Replicas: min(n, 3),
			Embed:  &cluster.EmbedConfig{Listen: "127.0.0.1:0", ClusterListen: fmt.Sprintf("127.0.0.1:%d", ports[i]), Routes: routes, StoreDir: filepath.Join(dir, "nats")},
			Logger: slog.New(slog.DiscardHandler), StartTimeout: 30 * time.Second,
		}
		for _, o := range opts {
			o(&m.cfg)
		}
		ms[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.start(t)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return ms
}

func (m *member) start(t testing.TB) error {
	// Join catches the ledger up within cfg.StartTimeout; a member given a
	// longer one (BenchmarkCatchUp) gets as long here.
	ctx, cancel := context.WithTimeout(context.Background(), max(40*time.Second, m.cfg.StartTimeout+10*time.Second))
	defer cancel()
	node, err := cluster.Connect(ctx, m.cfg)
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	m.store, err = ledger.Open(filepath.Join(m.dir, "ledger.db"), &ledger.Options{Replica: true, LogID: node.LogID()})
	if err != nil {
		node.Close(ctx)
		return err
	}
	if err := node.Join(ctx, m.store); err != nil {
		m.store.Close()
		return fmt.Errorf("%s: %w", m.name, err)
	}
	m.node = node
	t.Cleanup(m.stop)
	return nil
}

func (m *member) stop() {
	if m.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m.node.Close(ctx)
	m.node = nil
	m.store.Close()
}

func event(user, session string) *message.Message {
	b, _ := proto.Marshal(ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, user, session))
	return message.NewMessage(watermill.NewULID(), b)
}

// waitHead waits until every member's ledger reaches seq.
func waitHead(t *testing.T, ms []*member, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, m := range ms {
		for m.store.Head().Seq < seq {
			if time.Now().After(deadline) {
				t.Fatalf("%s: head %d; want %d", m.name, m.store.Head().Seq, seq)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// TestReplicasHoldTheSameLog: events published on any node land in every
// node's ledger at the stream's seq, with the same ids, times and chain;
// the publisher gets its stamps once its own replica holds them; a retried
// publish of the same message is stored once.
func TestReplicasHoldTheSameLog(t *testing.T) {
	ms := testCluster(t, 3)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				msg := event(fmt.Sprintf("u%d", i), fmt.Sprintf("s%d-%d", i, j))
				stamps, err := m.node.Publisher().PublishStamped(ledger.EventsTopic, msg)
				if err != nil {
					t.Error(err)
					return
				}
				if rec, err := m.store.Get(stamps[0].Seq); err != nil || rec.UUID != msg.UUID || rec.ID != stamps[0].ID {
					t.Errorf("%s: stamp %+v is not its own replica's record %v (%v)", m.name, stamps[0], rec, err)
				}
			}
		}()
	}
	wg.Wait()
	// The same message again: JetStream's message id de-duplication.
	again := event("u0", "s0-0")
	first, err := ms[0].node.Publisher().PublishStamped(ledger.EventsTopic, again)
	if err != nil {
		t.Fatal(err)
	}
	// A retry, on another node, before and after that node stored the
	// original: both get the original's stamp.
	for _, m := range []*member{ms[1], ms[2], ms[1]} {
		retry := message.NewMessage(again.UUID, again.Payload)
		st, err := m.node.Publisher().PublishStamped(ledger.EventsTopic, retry)
		if err != nil || st[0] != first[0] {
			t.Errorf("%s: a retried publish: %v, %v; want the original's stamp %+v", m.name, st, err, first[0])
		}
	}
	waitHead(t, ms, first[0].Seq)
	head := ms[0].store.Head()
	if head.Seq != 61 {
		t.Fatalf("head %d; want 61 (60 events and one de-duplicated retry)", head.Seq)
	}
	for _, m := range ms[1:] {
		if h := m.store.Head(); h != head {
			t.Errorf("%s head %+v; want %+v", m.name, h, head)
		}
	}
	// The nodes report every second: wait for reports of this head.
	deadline := time.Now().Add(10 * time.Second)
	for {
		at, _, differ := cluster.Compare(states(t, ms))
		if at == head.Seq && len(differ) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Compare: at %d, differ %v; want seq %d and none differing", at, differ, head.Seq)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func states(t *testing.T, ms []*member) []cluster.NodeState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := ms[0].node.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDeadAndAlive: the nodes see each other alive; a node judges none dead
// before its own heartbeats have landed for LostAfter; a node that stops
// is dead to the others within LostAfter (and a few heartbeats), and never
// to itself.
func TestDeadAndAlive(t *testing.T) {
	const hb, lostAfter = 200 * time.Millisecond, time.Second
	ms := testCluster(t, 3, func(c *cluster.Config) { c.Heartbeat, c.LostAfter = hb, lostAfter })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{"node-a", "node-b", "node-c"}
	a := ms[0].node
	poll := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 15 s: %s", what)
			}
		}
	}
	poll("node a judges, and finds every node alive", func() bool {
		dead, err := a.Dead(ctx, names)
		if err != nil && !errors.Is(err, cluster.ErrUnsteady) {
			t.Fatal(err)
		}
		return err == nil && len(dead) == 0
	})
	if alive, err := a.Alive(ctx); err != nil || !slices.Equal(alive, names) {
		t.Fatalf("alive: %v, %v; want %v", alive, err, names)
	}
	ms[2].stop()
	stopped := time.Now()
	poll("node c dead to node a", func() bool {
		dead, err := a.Dead(ctx, names)
		return err == nil && slices.Equal(dead, []string{"node-c"})
	})
	t.Logf("node c dead to node a %s after it stopped (lost after %s)", time.Since(stopped).Round(time.Millisecond), lostAfter)
	// Node b may not judge for a moment (ErrUnsteady: node c's server went
	// with it, and b's own heartbeats can miss a beat while the routes
	// settle); once it judges, it never finds itself dead.
	poll("node b judges again", func() bool {
		dead, err := ms[1].node.Dead(ctx, []string{"node-b"})
		if err != nil && !errors.Is(err, cluster.ErrUnsteady) {
			t.Fatal(err)
		}
		if err == nil && len(dead) != 0 {
			t.Fatalf("node b on itself: %v; want never dead to itself", dead)
		}
		return err == nil
	})
}
