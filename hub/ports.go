package hub

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// Ports are what the hub consumes. hubd wires them: on one node the
// ledger's watermill Publisher, its projection Runner and the ledger
// itself; in a cluster, a Publisher onto the shared log that answers once
// this node's replica holds the records.
type Ports struct {
	Publisher  Publisher
	Projection Projection
	History    History
	// Cluster is the cluster this hub is a node of; nil on a single node.
	Cluster Cluster
}

// Publisher records the hub's events: a watermill Publisher (the design's
// boundary between the hub and the log) that also says, as values, where
// each message landed. PublishStamped returns only once the messages are
// durable; an error means none of them is, except one wrapping
// ledger.ErrOutcomeUnknown (a cluster's log that may still record them:
// the hub answers OutcomeUnknown). If it also has an
// Err() error method, a non-nil result there means it takes no more
// appends, and the hub reports NOT_SERVING.
type Publisher interface {
	message.Publisher
	PublishStamped(topic string, msgs ...*message.Message) ([]ledger.Stamp, error)
}

// Projection is the state derived from the log that the hub enforces
// from. The hub never changes it; its Enforce must be the projection's
// change feed (projections.Config.OnChange).
type Projection interface {
	// Read calls fn with the applied state; fn must not keep it.
	Read(fn func(*projections.State))
	// WaitApplied returns once the record seq is applied (and Enforce has
	// seen its change), or ctx ends.
	WaitApplied(ctx context.Context, seq uint64) error
	// Applied is the last applied seq.
	Applied() uint64
	// Err reports why the projection stopped following the log, or nil.
	Err() error
}

// History reads what the log recorded: a resume's previous session and
// the notifications a resumed client missed.
type History interface {
	Head() ledger.Head
	Scan(ctx context.Context, from, to uint64, fn func(*ledger.Record) error) error
	ByUser(ctx context.Context, user string, from, to uint64, fn func(*ledger.Record) error) error
	BySession(ctx context.Context, session string, from, to uint64, fn func(*ledger.Record) error) error
}

// Cluster is what the hub shows of the cluster it is a node of.
type Cluster interface {
	// Nodes returns the live nodes as each last reported itself, this one
	// first, and the newest seq at which all of them reported their chain
	// hash (0: none shared).
	Nodes(ctx context.Context) (nodes []NodeStatus, comparedSeq uint64, err error)
	// Dead returns, of names, the nodes the cluster no longer sees alive
	// (no heartbeat for its LostAfter); never this one.
	Dead(ctx context.Context, names []string) ([]string, error)
	// Alive returns the names of the nodes the cluster sees alive, in
	// order.
	Alive(ctx context.Context) ([]string, error)
}

// NodeStatus is one node of a cluster as it last reported itself.
type NodeStatus struct {
	Node, Addr     string
	HeadSeq        uint64
	HeadHash       string
	AppliedSeq     uint64
	Lag            uint64
	Sessions       int
	Updated        time.Time
	HashAtCompared string
	// Differs is set when its hash at the compared seq is not the one
	// most nodes have.
	Differs bool
}
