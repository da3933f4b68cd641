package cluster

import (
	"testing"
	"time"
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
		took        time.Duration // when the subscription last delivered (0: never)
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"caught up", []step{{0, 10, 10, false, false, 0}, {time.Second, 12, 12, false, false, 0}, {2 * time.Second, 12, 12, false, false, 0}}},
		{"an append in flight is no stall", []step{
			{0, 10, 10, false, false, 0},
			{time.Second, 10, 11, false, false, 0},     // the stream took 11, the replica not yet: the clock starts
			{2 * time.Second, 11, 11, false, false, 0}, // it arrived
			{3 * time.Second, 11, 12, false, false, 0},
			{4 * time.Second, 12, 13, false, false, 0}, // moving while behind: no stall
			{5 * time.Second, 13, 14, false, false, 0},
		}},
		{"stalled after the kill", []step{
			{0, 10, 10, false, false, 0},
			{time.Second, 10, 40, false, false, 0},    // first probe to see it behind
			{2 * time.Second, 10, 80, true, false, 0}, // a probe interval later, same seq: subscribe again
			{2*time.Second + 500*time.Millisecond, 10, 80, false, false, 0},
			{3 * time.Second, 10, 90, false, false, 0}, // the new subscription gets restartAgainAfter
			{4 * time.Second, 10, 90, false, false, 0},
			{5 * time.Second, 10, 90, true, false, 0},
			{6 * time.Second, 90, 90, false, false, 0}, // it caught up
		}},
		{"stuck for behindFor is reported", []step{
			{0, 10, 10, false, false, 0},
			{time.Second, 10, 20, false, false, 0},
			{2 * time.Second, 10, 20, true, false, 0},
			{10 * time.Second, 10, 20, true, false, 0},
			{11*time.Second + time.Millisecond, 10, 20, false, true, 0}, // too soon to subscribe again; reported
			{12 * time.Second, 20, 20, false, false, 0},                 // caught up: served again
		}},
		{"the first probe starts from nothing", []step{{0, 0, 500, false, false, 0}, {time.Second, 0, 500, true, false, 0}}},
		{"a slow commit is no stall", []step{
			{0, 10, 10, false, false, 0},
			{time.Second, 10, 500, false, false, 900 * time.Millisecond},              // messages arrive; the commit is slow
			{2 * time.Second, 10, 600, false, false, 1900 * time.Millisecond},         // still arriving: not stuck
			{2500 * time.Millisecond, 10, 600, false, false, 1900 * time.Millisecond}, // none for 0.6 s: not yet
			{3 * time.Second, 10, 600, false, false, 1900 * time.Millisecond},         // none for 1.1 s: the clock starts at +2.5 s
			{4 * time.Second, 10, 600, true, false, 1900 * time.Millisecond},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var w replicaWatch
			for i, s := range c.steps {
				took := time.Time{}
				if s.took > 0 {
					took = at(s.took)
				}
				restart, _, err := w.probe(s.head, s.last, took, at(s.at))
				if restart != s.wantRestart || (err != nil) != s.wantErr {
					t.Fatalf("step %d (head %d, stream %d at +%s): got restart %v, err %v; want restart %v, error %v",
						i, s.head, s.last, s.at, restart, err, s.wantRestart, s.wantErr)
				}
			}
		})
	}
}
