package cluster

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
)

// TestReplicaWatch drives the replication watchdog's probe through the
// cases that matter: an append caught between the stream and the replica
// is not a stall, two probes at the same seq while behind are, a new
// subscription gets an interval of its own, and a replica that does not
// move for behindFor is reported.
func TestReplicaWatch(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at          time.Duration
		head, last  uint64
		wantRestart bool
		wantErr     bool
		working     bool // a message delivered within restartAfter, or a commit running
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"caught up", []step{{0, 10, 10, false, false, false}, {time.Second, 12, 12, false, false, false}, {2 * time.Second, 12, 12, false, false, false}}},
		{"an append in flight is no stall", []step{
			{0, 10, 10, false, false, false},
			{time.Second, 10, 11, false, false, false},     // the stream took 11, the replica not yet: the clock starts
			{2 * time.Second, 11, 11, false, false, false}, // it arrived
			{3 * time.Second, 11, 12, false, false, false},
			{4 * time.Second, 12, 13, false, false, false}, // moving while behind: no stall
			{5 * time.Second, 13, 14, false, false, false},
		}},
		{"stalled after the kill", []step{
			{0, 10, 10, false, false, false},
			{time.Second, 10, 40, false, false, false},    // first probe to see it behind
			{2 * time.Second, 10, 80, true, false, false}, // a probe interval later, same seq: subscribe again
			{2*time.Second + 500*time.Millisecond, 10, 80, false, false, false},
			{3 * time.Second, 10, 90, false, false, false}, // the new subscription gets restartAgainAfter
			{4 * time.Second, 10, 90, false, false, false},
			{5 * time.Second, 10, 90, true, false, false},
			{6 * time.Second, 90, 90, false, false, false}, // it caught up
		}},
		{"stuck for behindFor is reported", []step{
			{0, 10, 10, false, false, false},
			{time.Second, 10, 20, false, false, false},
			{2 * time.Second, 10, 20, true, false, false},
			{10 * time.Second, 10, 20, true, false, false},
			{11*time.Second + time.Millisecond, 10, 20, false, true, false}, // too soon to subscribe again; reported
			{12 * time.Second, 20, 20, false, false, false},                 // caught up: served again
		}},
		{"the first probe starts from nothing", []step{{0, 0, 500, false, false, false}, {time.Second, 0, 500, true, false, false}}},
		{"a slow commit is no stall", []step{
			{0, 10, 10, false, false, false},
			{time.Second, 10, 500, false, false, true},     // messages arrive
			{2 * time.Second, 10, 600, false, false, true}, // a commit runs long: not stuck
			{3 * time.Second, 10, 600, false, false, true},
			{11*time.Second + time.Millisecond, 10, 600, false, true, true}, // but the head stays: reported after behindFor
			{12 * time.Second, 10, 600, false, true, false},                 // the commit is over and nothing comes: the clock starts
			{13 * time.Second, 10, 600, true, true, false},
			{14 * time.Second, 600, 600, false, false, false},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w replicaWatch
			for i, s := range c.steps {
				restart, _, err := w.probe(s.head, s.last, s.working, at(s.at))
				if restart != s.wantRestart || (err != nil) != s.wantErr {
					t.Fatalf("step %d (head %d, stream %d at +%s): got restart %v, err %v; want restart %v, error %v",
						i, s.head, s.last, s.at, restart, err, s.wantRestart, s.wantErr)
				}
			}
		})
	}
}

// TestSettleDoubts: a message answered "outcome unknown" stays unsettled
// while the records stored are stamped within SettleAfter of the answer
// (the message may still be on its way, or a record answered from the
// duplicate window is an old one), and is presumed not recorded by the
// first stamped later, then watched for presumedFor; one the replica had
// already stored is never doubted.
func TestSettleDoubts(t *testing.T) {
	r := &replicator{n: &Node{log: slog.New(slog.DiscardHandler), cfg: Config{SettleAfter: 30 * time.Second}},
		doubts: map[string]time.Time{}, presumed: map[string]time.Time{}, recent: map[string]ledger.Stamp{"stored": {Seq: 7}}}
	t0 := time.Now()
	r.doubt([]string{"m1", "stored"}, t0)
	r.doubt([]string{"m2"}, t0.Add(10*time.Second))
	if got := r.unsettled(); len(got) != 2 {
		t.Fatalf("unsettled %v; want m1 and m2 (a message already stored is not in doubt)", got)
	}
	for _, at := range []time.Duration{-time.Minute, 0, 29 * time.Second, 30 * time.Second} {
		r.settle(t0.Add(at))
		if got := r.unsettled(); len(got) != 2 {
			t.Fatalf("after a record stamped %v from m1's answer: unsettled %v; want m1 and m2 still", at, got)
		}
	}
	r.settle(t0.Add(31 * time.Second))
	if got := r.unsettled(); len(got) != 1 || got[0] != "m2" {
		t.Fatalf("after a record stamped 31s after m1's answer: unsettled %v; want m2 only", got)
	}
	r.settle(t0.Add(41 * time.Second))
	if got := r.unsettled(); len(got) != 0 {
		t.Fatalf("unsettled %v; want none", got)
	}
	// Both are watched, in case one is recorded all the same, for
	// presumedFor.
	if len(r.presumed) != 2 {
		t.Fatalf("presumed %v; want m1 and m2", r.presumed)
	}
	r.settle(t0.Add(10*time.Second + presumedFor + time.Second))
	if len(r.presumed) != 0 {
		t.Fatalf("presumed %v an hour on; want none", r.presumed)
	}
}
