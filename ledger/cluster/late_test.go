package cluster_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/internal/natstest"
	"github.com/sessionledger/sessionledger/internal/stallproxy"
	"github.com/sessionledger/sessionledger/ledger"
)

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
	// A TCP path that stalls keeps what it was given in the kernels at
	// both ends and delivers it once it is back, for as long as neither
	// end gives the connection up (NATS does when its pings go
	// unanswered: minutes by default). The proxy holds node-a's
	// publisher connection so; its replicator's stays up.
	proxy := stallproxy.New(t, srv[0].URL[len("nats://"):])
	proxy.Mark(`"name":"hubd node-a publisher"`)
	a := outcomeMember(t, "node-a", "nats://"+proxy.Addr())
	b := outcomeMember(t, "node-b", srv[1].URL)
	if _, err := a.node.Publisher().PublishStamped(ledger.EventsTopic, event("u", "before")); err != nil {
		t.Fatal(err)
	}

	proxy.Hold()
	time.Sleep(60 * time.Millisecond) // what was in flight before the hold is through
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
	proxy.Release()
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
