package hub

import (
	"context"
	"slices"
	"time"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// watchLost runs on a cluster node: every LostCheck it asks the cluster
// which of the nodes holding live sessions (as the log shows them) are
// dead — no heartbeat for the cluster's LostAfter: killed, powered off,
// cut off from NATS — and records each of their sessions' ends with cause
// lost. A dead node recorded nothing; the survivors can, because every
// node reads the same log.
//
// Several survivors may notice at once. Each end is published with the
// same idempotency key on every node ("lost-" and the session id), so the
// cluster's log stores it once (JetStream's duplicate window); should two
// land anyway (a window passed), the first in stream order ends the
// session and the reducer counts the later one (duplicate terminals),
// changing nothing. And only one node tries at first: the alive node with
// the lowest name records at once; another records only when the dead
// node's live sessions have not become fewer for lostTakeover checks in a
// row (the first is gone too, or cannot publish).
func (s *Server) watchLost() {
	defer s.bg.Done()
	t := time.NewTicker(s.cfg.LostCheck)
	defer t.Stop()
	seen := map[string]*deadNode{}
	base, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		select {
		case <-s.stopBg:
			stop()
		case <-base.Done():
		}
	}()
	for {
		select {
		case <-t.C:
		case <-s.stopBg:
			return
		}
		s.checkLost(base, seen)
	}
}

// lostTakeover is how many checks a node other than the first alive one
// waits, seeing a dead node's sessions not become fewer, before it records
// them itself.
const lostTakeover = 5

// deadNode is what checkLost remembers of a dead node between checks.
type deadNode struct {
	stalled int // checks in a row its live sessions did not become fewer
	live    int // its live sessions at the last check
}

// checkLost is one check; base ends when the server stops.
func (s *Server) checkLost(base context.Context, seen map[string]*deadNode) {
	ctx, cancel := context.WithTimeout(base, 2*s.cfg.LostCheck)
	defer cancel()
	if s.Err() != nil {
		return // cut off: this node cannot tell who is dead, nor record it
	}
	var holders []string
	live := map[string]int{}
	s.proj.Read(func(st *projections.State) {
		for _, sess := range st.Sessions(projections.Filter{}) {
			if sess.Node == s.cfg.Node {
				continue
			}
			if live[sess.Node]++; live[sess.Node] == 1 {
				holders = append(holders, sess.Node)
			}
		}
	})
	if len(holders) == 0 {
		clear(seen)
		return
	}
	dead, err := s.cluster.Dead(ctx, holders)
	if err != nil {
		s.log.Debug("could not ask the cluster which nodes are alive", "err", err)
		return
	}
	for n := range seen {
		if !slices.Contains(dead, n) {
			delete(seen, n)
		}
	}
	if len(dead) == 0 {
		return
	}
	first := false
	if alive, err := s.cluster.Alive(ctx); err == nil {
		first = len(alive) > 0 && alive[0] == s.cfg.Node
	}
	for _, node := range dead {
		d := seen[node]
		switch {
		case d == nil:
			d = &deadNode{}
			seen[node] = d
		case live[node] < d.live:
			d.stalled = 0
		default:
			d.stalled++
		}
		d.live = live[node]
		if !first && d.stalled < lostTakeover {
			continue
		}
		// Publishing hundreds of ends takes longer than a check.
		rctx, rcancel := context.WithTimeout(base, 30*time.Second)
		s.recordLost(rctx, node)
		rcancel()
	}
}

// lostPublishers is how many publishes of a dead node's ends are in flight
// at once.
const lostPublishers = 32

// recordLost records the end of every session the log shows live on the
// dead node: cause lost, or the pending end the projections hold for it
// (a kick, ban or supersede recorded before the node died, as crash
// recovery does; but not the supersede of its own client's resume on
// another node, which only followed from the node dying), with the dead
// node as the event's node and this one as its actor.
func (s *Server) recordLost(ctx context.Context, node string) {
	var lost []projections.Session
	pending := map[string]projections.PendingEnd{}
	s.proj.Read(func(st *projections.State) {
		lost = st.Sessions(projections.Filter{Node: node})
		for _, l := range lost {
			p, ok := st.Pending(l.ID)
			if !ok {
				continue
			}
			// Its own client resuming elsewhere (the resume supersedes
			// the session it resumes) is not why it ended: its node died.
			if next, live := st.Session(p.SupersededBy); p.Cause == eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED && live && next.Previous == l.ID {
				continue
			}
			pending[l.ID] = p
		}
	})
	if len(lost) == 0 {
		return
	}
	actor := "node:" + s.cfg.Node
	evs := make([]*eventpb.Event, len(lost))
	keys := make([]string, len(lost))
	for i, l := range lost {
		keys[i] = "lost-" + l.ID
		cause, reason := CauseLost, "node "+node+" stopped (no heartbeat); recorded by "+s.cfg.Node
		d := &Disconnect{Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED, Actor: actor}
		if p, ok := pending[l.ID]; ok {
			d = pendingDisconnect(p)
			cause, reason = d.Cause, d.Reason
		}
		evs[i] = endEvent(l.User, l.Device, l.ID, cause, reason, d)
		evs[i].Node = node
		if _, ok := pending[l.ID]; !ok {
			evs[i].Actor = actor
		}
	}
	// A publish waits for the stream's quorum, one event after another:
	// the ends go out in lostPublishers parts at once, so a node's
	// thousand sessions take a few round trips, not a thousand. They are
	// independent, and each is keyed, so a part that fails is tried again
	// with the rest on the next check and lands once.
	parts := min(lostPublishers, len(evs))
	errs := make(chan error, parts)
	for i := range parts {
		lo, hi := i*len(evs)/parts, (i+1)*len(evs)/parts
		go func() {
			_, err := s.publishAppliedKeyed(ctx, keys[lo:hi], evs[lo:hi]...)
			errs <- err
		}()
	}
	var failed error
	for range parts {
		if err := <-errs; err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		s.log.Error("could not record the sessions of a dead node as lost; trying again", "node", node, "sessions", len(lost), "err", failed)
		return
	}
	s.metrics.lostRecorded.Add(float64(len(lost)))
	s.log.Warn("recorded the sessions of a dead node as lost", "node", node, "sessions", len(lost), "pending_ends_carried", len(pending))
}
