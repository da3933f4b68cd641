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

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/internal/natstest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// doubtful is a node left with publishes answered "outcome unknown": its
// NATS server leads the stream and lost both followers (stopped) while
// the node published to it.
type doubtful struct {
	srv     []*natstest.Server
	leader  *natstest.Server // the server the node is on, still running
	a       *member
	doubted []string // the messages answered outcome unknown
	// late are those of doubted published after both followers had
	// stopped: only the leader can hold them.
	late []string
}

// outcomeMember starts a node on the NATS server at url with the short
// timeouts the outcome tests use, stopped when the test ends.
func outcomeMember(t *testing.T, name, url string) *member {
	t.Helper()
	m := &member{name: name, dir: t.TempDir(), cfg: cluster.Config{
		Node: name, InstanceID: name + "-instance", Replicas: 3, URLs: []string{url},
		PublishTimeout: 500 * time.Millisecond, RetryFor: 1500 * time.Millisecond,
		// Nothing here can hold a message on its way for long unless a
		// test holds it: one connection on the loopback, routes that are
		// up or gone.
		SettleAfter: 2 * time.Second,
		Logger:      slog.New(slog.DiscardHandler), StartTimeout: 30 * time.Second,
	}}
	if err := m.start(t); err != nil {
		t.Fatal(err)
	}
	return m
}

// nodeOnLeader starts three NATS servers and a node (node-a) connected to
// the one that leads the cluster's stream, which a first node made: the
// server that will be left alone when the others stop.
func nodeOnLeader(t *testing.T) (srv []*natstest.Server, leader *natstest.Server, a *member) {
	t.Helper()
	srv = natstest.Cluster(t, 3)
	setup := outcomeMember(t, "node-x", srv[0].URL)
	name := streamLeader(t, srv[0].URL)
	setup.stop()
	for _, s := range srv {
		if s.Name == name {
			leader = s
		}
	}
	if leader == nil {
		t.Fatalf("the stream's leader %q is none of the test's servers", name)
	}
	return srv, leader, outcomeMember(t, "node-a", leader.URL)
}

// stopAllBut stops every server of srv but keep, at once.
func stopAllBut(srv []*natstest.Server, keep *natstest.Server) {
	var stops sync.WaitGroup
	for _, s := range srv {
		if s != keep {
			stops.Go(s.Stop)
		}
	}
	stops.Wait()
}

// leaveInDoubt makes a doubtful node: three NATS servers, a node on the
// stream's leader publishing back to back from a few goroutines, and both
// followers stopped at once. A publish sent after they went and before
// the node hears that the leader lacks a quorum (the leader counts a
// replica up for 5 s after it last heard it) reaches a leader that can no
// longer commit it, and must be answered outcome unknown, not plainly
// failed; the node must list it as unsettled.
func leaveInDoubt(t *testing.T) *doubtful {
	t.Helper()
	srv, alone, a := nodeOnLeader(t)

	// Each publishing goroutine stops at its first failure other than a
	// publish acknowledged and not yet applied here (its replica's
	// consumer may have been on a stopped server).
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
	stopAllBut(srv, alone)
	// And one more publish each, from a few more goroutines, now that
	// both followers are gone (answered outcome unknown unless the node
	// heard of the lost quorum first).
	lateFailed := make(chan failure, publishers)
	for range publishers {
		go func() {
			msg := event("u", "late")
			_, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, msg)
			if err == nil {
				err = errors.New("recorded without a quorum")
			}
			lateFailed <- failure{msg.UUID, err}
		}()
	}
	var doubted, late []string
	for range publishers {
		f := <-lateFailed
		switch {
		case errors.Is(f.err, ledger.ErrOutcomeUnknown):
			doubted, late = append(doubted, f.uuid), append(late, f.uuid)
		case !strings.Contains(f.err.Error(), "nothing published"):
			t.Errorf("a publish after the followers stopped: %v; want outcome unknown, or refused with nothing published", f.err)
		}
	}
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
	return &doubtful{srv: srv, leader: alone, a: a, doubted: doubted, late: late}
}

// TestOutcomeUnknownIsSettled: a node whose publishes were answered
// "outcome unknown" (leaveInDoubt) keeps them unsettled until, with the
// followers back, the log records more: each is found in the log, or,
// once a record stamped SettleAfter later is stored without it, presumed
// not recorded, and no presumption proves wrong. (With all three
// servers back, the leader that holds them has the longest log and is
// usually elected again, so they tend to be recorded after all:
// TestOutcomeUnknownNotRecorded makes the other case.)
func TestOutcomeUnknownIsSettled(t *testing.T) {
	d := leaveInDoubt(t)
	for _, s := range d.srv {
		s.Start(t)
	}
	at := d.settle(t)
	t.Logf("%d publishes answered outcome unknown; %d of them recorded after all", len(d.doubted), len(at))
}

// TestOutcomeUnknownNotRecorded: the same, but the leader that holds the
// doubted messages stops too, and its followers come back first and elect
// one of themselves; when the old leader returns it follows. The new
// leader's log lacks the messages published after the followers stopped
// (those in flight as they stopped may have reached them): the records
// that follow make the node presume those not recorded, and the ledger
// never gets them.
func TestOutcomeUnknownNotRecorded(t *testing.T) {
	d := leaveInDoubt(t)
	if len(d.late) == 0 {
		t.Fatalf("no publish sent after both followers stopped was answered outcome unknown (%d sent before were); want some", len(d.doubted))
	}
	d.leader.Stop()
	var back []*natstest.Server
	for _, s := range d.srv {
		if s != d.leader {
			s.Start(t)
			back = append(back, s)
		}
	}
	if l := streamLeader(t, back[0].URL); l == d.leader.Name {
		t.Fatalf("the stream's leader is %s, which is stopped", l)
	}
	d.leader.Start(t)
	at := d.settle(t)
	for _, u := range d.late {
		if seqs := at[u]; len(seqs) != 0 {
			t.Errorf("message %s, sent when only the old leader could take it, was recorded at seq %v; want never (a leader without it leads now)", u, seqs)
		}
	}
	t.Logf("%d publishes answered outcome unknown (%d sent after the followers stopped); %d recorded after all", len(d.doubted), len(d.late), len(at))
}

// settle publishes on the doubtful node until one is recorded with no
// doubt left (bounded), and checks that what the log holds agrees: each
// doubted message at most once, and before the last publish.
// It returns the seqs of each doubted message recorded.
func (d *doubtful) settle(t *testing.T) map[string][]uint64 {
	t.Helper()
	a, doubted := d.a, d.doubted
	// Publish until one is recorded and no doubt is left: a record
	// settles a doubt only if the stream stamped it more than SettleAfter
	// after the answer, so the first may come too soon.
	var after ledger.Stamp
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "after"))
		if err == nil {
			after = st[0]
			if len(a.node.Unsettled()) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing once the servers are back: last %v; unsettled %v; want a publish recorded and no doubt left", err, a.node.Unsettled())
		}
		time.Sleep(200 * time.Millisecond)
	}
	// What the node settled is what the log holds: each doubted message
	// at most once, and before the publishes that settled it.
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
	if n := a.node.PresumedWrong(); n != 0 {
		t.Fatalf("PresumedWrong() = %d; want 0: nothing here holds a message on its way", n)
	}
	return at
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
	// Servers just started elect after a Raft election timeout of 4–9 s,
	// the meta group's first and then the stream's; each request gets
	// a short time of its own (one sent while nothing leads gets no
	// answer at all).
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s, err := js.Stream(ctx, cluster.DefaultStream)
		if err == nil {
			var info *jetstream.StreamInfo
			if info, err = s.Info(ctx); err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
				cancel()
				return info.Cluster.Leader
			}
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("the stream's leader: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDuplicateAnswerSettlesNothing: JetStream answers the publish of a
// message id it stored already from its duplicate window, without a Raft
// round, and a leader left without its quorum still answers so. Such a
// publish gets an old record back and commits nothing after a message
// answered "outcome unknown", which that leader may still commit once its
// quorum is back: it must not settle it. And a copy of the doubted
// message, which the leader holds uncommitted, is answered "duplicate
// message id is in process": an outcome unknown too, not a refusal.
func TestDuplicateAnswerSettlesNothing(t *testing.T) {
	srv, alone, a := nodeOnLeader(t)
	stored := event("u", "stored")
	if _, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, stored); err != nil {
		t.Fatal(err)
	}
	// Long enough ago that a record stamped now would settle a doubt
	// answered now, were an old record taken for a new one.
	time.Sleep(2500 * time.Millisecond)

	stopAllBut(srv, alone)
	// At once, before the node hears that the leader lacks a quorum
	// (the leader's count takes about 5 s): the doubted message goes to the
	// leader, which cannot commit it; while it holds it, a copy of the
	// stored message (a keyed event another node recorded first, or a
	// retry) is answered as a duplicate, with the stored record, and a
	// copy of the doubted one (a caller's retry, the same keyed event
	// from another node) finds it in process.
	doubted := event("u", "doubted")
	first := make(chan error, 1)
	go func() {
		_, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, doubted)
		first <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, message.NewMessage(stored.UUID, stored.Payload)); err != nil {
		t.Fatalf("a copy of a stored message: %v; want the stored one's stamp", err)
	}
	if _, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, message.NewMessage(doubted.UUID, doubted.Payload)); !errors.Is(err, ledger.ErrOutcomeUnknown) {
		t.Fatalf("a copy of the message the leader holds uncommitted: %v; want outcome unknown", err)
	}
	if err := <-first; !errors.Is(err, ledger.ErrOutcomeUnknown) {
		t.Fatalf("publish to a leader without its followers: %v; want outcome unknown", err)
	}
	if u := a.node.Unsettled(); !slices.Contains(u, doubted.UUID) {
		t.Fatalf("unsettled %v after a publish answered as a duplicate; want %s still: nothing was committed after it", u, doubted.UUID)
	}

	// With the followers back, later records settle it, in agreement
	// with the ledger.
	for _, s := range srv {
		s.Start(t)
	}
	d := &doubtful{srv: srv, leader: alone, a: a, doubted: []string{doubted.UUID}}
	at := d.settle(t)
	t.Logf("the doubted message was %s", map[bool]string{true: "recorded after all", false: "not recorded"}[len(at[doubted.UUID]) == 1])
}
