package cluster_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger/cluster"
)

// TestDeadWaitsForTheRegistry: a node that (re)joined does not call any
// node dead until the registry has taken its own heartbeats for
// LostAfter (before that an expired entry proves nothing: while the
// registry's bucket has no leader every entry expires, the live nodes'
// too); then a name without an entry is dead and a live node is not.
func TestDeadWaitsForTheRegistry(t *testing.T) {
	const lostAfter = 4 * time.Second
	ms := testCluster(t, 3, func(c *cluster.Config) { c.Heartbeat, c.LostAfter = 250*time.Millisecond, lostAfter })
	c := ms[2]
	c.stop()
	begin := time.Now()
	if err := c.start(t); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names := []string{"node-a", "node-gone"}
	dead, err := c.node.Dead(ctx, names)
	if took := time.Since(begin); took < lostAfter && !errors.Is(err, cluster.ErrRegistryUnsettled) {
		t.Fatalf("Dead %s after the node started: %v, %v; want ErrRegistryUnsettled", took.Round(time.Millisecond), dead, err)
	}
	time.Sleep(time.Until(begin.Add(lostAfter + 500*time.Millisecond)))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if dead, err = c.node.Dead(ctx, names); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Dead %s after the node started: %v; want an answer", time.Since(begin).Round(time.Millisecond), err)
		}
	}
	if !slices.Equal(dead, []string{"node-gone"}) {
		t.Fatalf("Dead(%v) = %v; want [node-gone]", names, dead)
	}
}
