package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Drain bounds: the window a drained node's sessions are told to come
// back over.
const (
	DefaultDrainWindow = 5 * time.Second
	MaxDrainWindow     = time.Hour
)

// drainingAdvice is what a draining node tells a client it refuses: come
// back shortly (to another node).
const drainingAdvice = time.Second

// Drain records node_drained for a node: every session the log shows live
// on it ends with cause drained, told to reconnect after a delay spread
// over the window (projections.DrainDelay), and the node refuses new
// connects (reject code draining, health NOT_SERVING) until it restarts.
// Any node of a cluster can drain any alive node: the event reaches it
// through the log.
func (a *admin) Drain(ctx context.Context, req *hubpb.DrainRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	node := req.GetNode()
	if node == "" {
		node = s.cfg.Node
	}
	if err := checkNames("node", node); err != nil {
		return nil, err
	}
	window := time.Duration(req.GetWindowMs()) * time.Millisecond
	switch {
	case req.GetWindowMs() < 0:
		return nil, invalidf("window_ms %d is negative", req.GetWindowMs())
	case window == 0:
		window = DefaultDrainWindow
	case window > MaxDrainWindow:
		return nil, invalidf("window %s is longer than %s", window, MaxDrainWindow)
	}
	if node != s.cfg.Node {
		if s.cluster == nil {
			return nil, invalidf("this hubd is node %q, not a node of a cluster: it can drain only itself", s.cfg.Node)
		}
		// The nodes as they last reported themselves (an entry expires
		// when a node stops reporting): a name no live node has is a typo
		// or a dead node, whose sessions are recorded lost anyway.
		nodes, _, err := s.cluster.Nodes(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: the cluster's nodes: %v", ErrLedger, err)
		}
		var names []string
		for _, n := range nodes {
			names = append(names, n.Node)
		}
		if !slices.Contains(names, node) {
			return nil, fmt.Errorf("%w: node %q is not a live node of the cluster (live: %s); a dead node's sessions are recorded lost", ErrNotFound, node, strings.Join(names, ", "))
		}
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NODE_DRAINED, Actor: ActorFrom(ctx), Reason: req.GetReason(),
		Body: &eventpb.Event_NodeDrained{NodeDrained: &eventpb.NodeDrained{Node: node, WindowMs: window.Milliseconds()}}}
	st, err := s.publishApplied(ctx, ev)
	if err != nil {
		return nil, err
	}
	s.log.Info("drain recorded", "node", node, "window", window, "actor", ev.Actor, "seq", st[0].Seq)
	return reply(st, s.affectedBy(st[0].Seq)), nil
}

// errDraining is Err's while the node drains.
var errDraining = errors.New("draining: this node moves its sessions to other nodes and takes no new ones until it restarts")

// drained is Enforce's for node_drained: when the drain is this node's and
// was recorded while it serves (not one from before its start, replayed),
// it takes no more sessions. Its live ones end through their pending ends.
func (s *Server) drained(node string) {
	if node != s.cfg.Node || !s.started.Load() || s.draining.Swap(true) {
		return
	}
	s.notServing()
	s.log.Warn("this node is drained: its sessions are told to reconnect elsewhere, and it refuses new ones until it restarts")
}

// drainingRejection is the refusal of a connect to a draining node.
func drainingRejection() *Rejection {
	return &Rejection{Code: RejectDraining, Reason: "this node is drained; connect to another node",
		Reconnect: eventpb.Reconnect_RECONNECT_AFTER, ReconnectAfter: jittered(drainingAdvice), status: codes.Unavailable}
}
