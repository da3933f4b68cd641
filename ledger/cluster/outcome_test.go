package cluster_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/internal/natstest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// TestOutcomeUnknownIsSettled: a node on an existing NATS deployment
// publishes while the stream's leader loses both its followers. The
// publish that was in flight is answered "outcome unknown" (the leader
// holds it and may commit it later), not plainly failed; the node keeps
// it as unsettled until, with the followers back, a later publish of its
// own is recorded, and then knows: the message is in the log before that
// publish, or never will be.
func TestOutcomeUnknownIsSettled(t *testing.T) {
	srv := natstest.Cluster(t, 3)
	member := func(name, url string) *member {
		dir := t.TempDir()
		m := &member{name: name, dir: dir, cfg: cluster.Config{
			Node: name, InstanceID: name + "-instance", Replicas: 3, URLs: []string{url},
			PublishTimeout: 500 * time.Millisecond, RetryFor: 1500 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler), StartTimeout: 30 * time.Second,
		}}
		if err := m.start(t); err != nil {
			t.Fatal(err)
		}
		return m
	}
	// A first node makes the stream; the node under test then goes to
	// the server that leads it, the one that will be left alone.
	setup := member("node-x", srv[0].URL)
	leader := streamLeader(t, srv[0].URL)
	setup.stop()
	var alone *natstest.Server
	for _, s := range srv {
		if s.Name == leader {
			alone = s
		}
	}
	if alone == nil {
		t.Fatalf("the stream's leader %q is none of the test's servers", leader)
	}
	a := member("node-a", alone.URL)

	// Publish back to back, from a few goroutines, while both followers
	// stop at once: a publish sent after they went and before the node's
	// next probe of the stream (within a second) reaches a leader that
	// can no longer commit it. Each goroutine stops at its first failure
	// other than a publish acknowledged and not yet applied here (its
	// replica's consumer may have been on a stopped server).
	type failure struct {
		uuid string
		err  error
	}
	const publishers = 4
	failed := make(chan failure, publishers)
	for range publishers {
		go func() {
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				msg := event("u", "s")
				_, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, msg)
				if err != nil && !errors.Is(err, cluster.ErrNotApplied) {
					failed <- failure{msg.UUID, err}
					return
				}
			}
			failed <- failure{"", errors.New("no publish failed within 20s of stopping the followers")}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	var stops sync.WaitGroup
	for _, s := range srv {
		if s != alone {
			stops.Go(s.Stop)
		}
	}
	stops.Wait()
	var doubted []string
	for range publishers {
		f := <-failed
		switch {
		case errors.Is(f.err, ledger.ErrOutcomeUnknown):
			doubted = append(doubted, f.uuid)
		case !strings.Contains(f.err.Error(), "nothing published"):
			t.Errorf("a publish once the followers stopped: %v; want outcome unknown, or refused with nothing published", f.err)
		}
	}
	if len(doubted) == 0 {
		t.Fatalf("no publish was answered outcome unknown; want those in flight when the quorum went to be")
	}
	u := a.node.Unsettled()
	for _, d := range doubted {
		if !slices.Contains(u, d) {
			t.Fatalf("unsettled %v; want it to hold %s, a message answered outcome unknown", u, d)
		}
	}

	for _, s := range srv {
		s.Start(t)
	}
	var after ledger.Stamp
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "after"))
		if err == nil {
			after = st[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish once the followers are back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if u := a.node.Unsettled(); len(u) != 0 {
		t.Fatalf("unsettled %v after a later publish was recorded at seq %d; want none", u, after.Seq)
	}
	// What the node settled is what the log holds: each doubted message
	// at most once, and before the publish that settled it.
	at := map[string][]uint64{}
	if err := a.store.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		if slices.Contains(doubted, r.UUID) {
			at[r.UUID] = append(at[r.UUID], r.Seq)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, d := range doubted {
		if seqs := at[d]; len(seqs) > 1 || (len(seqs) == 1 && seqs[0] > after.Seq) {
			t.Fatalf("doubted message %s is at seqs %v; want at most once, before seq %d", d, seqs, after.Seq)
		}
	}
	t.Logf("%d publishes answered outcome unknown; %d of them recorded after all", len(doubted), len(at))
}

// streamLeader names the server that leads the cluster's stream.
func streamLeader(t *testing.T, url string) string {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		s, err := js.Stream(ctx, cluster.DefaultStream)
		if err == nil {
			info, err := s.Info(ctx)
			if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				return info.Cluster.Leader
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("the stream's leader: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
