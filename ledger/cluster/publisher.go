package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/ledger"
)

var _ message.Publisher = (*Publisher)(nil)

// ErrNotApplied is returned, wrapped, when JetStream took a message but
// this node's replica did not store it in time: the message is in the log
// (it will be applied), but the caller must not assume it took effect.
var ErrNotApplied = errors.New("recorded in the cluster's log but not yet applied on this node")

// ErrUnsteady is Node.Dead's answer while this node has not heard its own
// heartbeats without a gap for LostAfter: it cannot tell a dead node from
// its own trouble hearing (just started, or cut off from NATS).
var ErrUnsteady = errors.New("this node has not heard its own heartbeats for --lost-after in a row: it does not judge other nodes dead yet")

// Publisher publishes onto the cluster's stream through watermill-nats,
// with each message's UUID as JetStream's message id (a retried publish is
// stored once), and returns once JetStream acknowledged the message and
// this node's replica stored it. It is the hub's Publisher in cluster
// mode.
type Publisher struct {
	n  *Node
	wm *wmnats.Publisher
}

func newPublisher(n *Node) (*Publisher, error) {
	// Nothing is buffered while the connection is re-established: a
	// publish then fails at once, so one answered failed is never sent
	// later (nats.go's default buffers 8 MB and sends it on reconnect).
	nc, err := n.connect("publisher", nats.ReconnectBufSize(-1))
	if err != nil {
		return nil, err
	}
	wm, err := wmnats.NewPublisherWithNatsConn(nc, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream: wmnats.JetStreamConfig{
			TrackMsgId:     true,
			PublishOptions: []nats.PubOpt{nats.AckWait(n.cfg.PublishTimeout), nats.ExpectStream(n.cfg.Stream)},
		},
	}, wmLogger(n.log.With("component", "publisher")))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("publisher: %w", err)
	}
	return &Publisher{n: n, wm: wm}, nil
}

// Publish is PublishStamped without the stamps, for watermill.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	_, err := p.PublishStamped(topic, msgs...)
	return err
}

// PublishStamped publishes msgs in order and returns, once each is in the
// stream and in this node's replica, where each landed. Messages the
// ledger would refuse are refused before anything is published
// (ledger.ErrInvalidEvent): every replica would refuse them too. A batch
// is not atomic across the cluster: if a publish fails, the messages
// before it are recorded. The first message's context bounds the wait for
// this node's replica (at most ten publish timeouts).
func (p *Publisher) PublishStamped(topic string, msgs ...*message.Message) ([]ledger.Stamp, error) {
	if topic != streamSubject {
		return nil, fmt.Errorf("publish: %w: the cluster's log takes the events topic only, not %q", ledger.ErrInvalidEvent, topic)
	}
	for _, m := range msgs {
		if m.UUID == "" {
			return nil, fmt.Errorf("publish: %w: a message needs a UUID (it is the idempotency key)", ledger.ErrInvalidEvent)
		}
		if err := ledger.ValidateMessage(topic, m.Payload); err != nil {
			return nil, err
		}
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	ctx := msgs[0].Context()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	if err := p.n.repl.Err(); err != nil {
		return nil, fmt.Errorf("publish: this node does not follow the cluster's log: %w", err)
	}
	if err := p.n.refusal(); err != nil {
		return nil, fmt.Errorf("publish: refused, nothing published: %w", err)
	}
	waits := make([]<-chan ledger.Stamp, len(msgs))
	for i, m := range msgs {
		waits[i] = p.n.repl.await(m.UUID)
	}
	defer func() {
		for _, m := range msgs {
			p.n.repl.forget(m.UUID)
		}
	}()
	if err := p.publish(ctx, topic, msgs); err != nil {
		if errors.Is(err, ledger.ErrOutcomeUnknown) {
			// The replica may have stored them while the answer was
			// lost: then the outcome is known after all.
			if out, ok := stored(waits); ok {
				return out, nil
			}
		}
		return nil, fmt.Errorf("publish to the cluster's log: %w", err)
	}
	wait, cancel := context.WithTimeout(ctx, 10*p.n.cfg.PublishTimeout)
	defer cancel()
	out := make([]ledger.Stamp, len(msgs))
	for i, ch := range waits {
		select {
		case out[i] = <-ch:
		case <-wait.Done():
			return nil, fmt.Errorf("publish: message %s: %w (%v)", msgs[i].UUID, ErrNotApplied, wait.Err())
		}
	}
	return out, nil
}

// stored returns the stamps waits already hold, if every one holds its.
func stored(waits []<-chan ledger.Stamp) ([]ledger.Stamp, bool) {
	out := make([]ledger.Stamp, len(waits))
	for i, ch := range waits {
		select {
		case out[i] = <-ch:
		default:
			return nil, false
		}
	}
	return out, true
}

// publish publishes msgs, trying again while the stream does not answer
// (a new leader being elected after a server died takes a few seconds), at
// most RetryFor, until ctx ends, or until the node knows the stream cannot
// take them (Node.refusal). Trying again is safe: each message carries its
// UUID as JetStream's message id, so one stored already is not stored
// twice.
//
// When it gives up after an attempt whose message may have reached the
// stream's leader (no answer in time, rather than a refusal or nobody
// listening), the leader may still commit it: the error wraps
// ledger.ErrOutcomeUnknown and names the messages, and the node remembers
// them until the log settles what became of them (replicator.settle).
func (p *Publisher) publish(ctx context.Context, topic string, msgs []*message.Message) error {
	deadline := time.Now().Add(p.n.cfg.RetryFor)
	unsure := false
	for attempt := 0; ; attempt++ {
		err := p.wm.Publish(topic, msgs...)
		if err == nil {
			if attempt > 0 {
				p.n.log.Info("published after retrying", "attempts", attempt+1)
			}
			return nil
		}
		unsure = unsure || mayHaveLanded(err)
		if ctx.Err() == nil && time.Now().Before(deadline) && retriable(err) {
			rerr := p.n.refusal()
			if rerr == nil && pause(ctx, 100*time.Millisecond) {
				continue
			}
			if rerr != nil {
				err = fmt.Errorf("%w; then: %v", err, rerr)
			}
		}
		if !unsure {
			return err
		}
		ids := make([]string, len(msgs))
		for i, m := range msgs {
			ids[i] = m.UUID
		}
		p.n.repl.doubt(ids, time.Now())
		p.n.log.Warn("publish answered \"outcome unknown\": the stream may still record it", "messages", strings.Join(ids, ","), "err", err)
		return fmt.Errorf("message %s: %w (%v)", strings.Join(ids, ","), ledger.ErrOutcomeUnknown, err)
	}
}

// pause waits d, or less if ctx ends first, and reports whether it waited
// all of d.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// retriable reports a publish failure that a new try may not meet: no
// answer (no leader yet, a server gone), no responders, a timeout, a
// connection being re-established.
func retriable(err error) bool {
	return errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting) ||
		errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, context.DeadlineExceeded) || inProcess(err)
}

// inProcess reports JetStream's answer that the leader holds a proposal
// with the message's id not committed yet (jsErrDuplicateInProcess): a
// try once it is committed gets its stamp as a duplicate's.
func inProcess(err error) bool {
	var api *nats.APIError
	return errors.As(err, &api) && api.ErrorCode == jsErrDuplicateInProcess
}

// jsErrDuplicateInProcess is JetStream's answer to a message id its
// leader holds in a proposal not committed yet (JSStreamDuplicateMessageConflict,
// "duplicate message id is in process"): a retry of a publish that got no
// answer, or the same keyed event from another node. That message may
// still be committed.
const jsErrDuplicateInProcess nats.ErrorCode = 10158

// mayHaveLanded reports a failed publish whose message may have reached
// the stream's leader: anything but an answer that it was not taken (an
// error from the stream other than a copy in process, nobody listening)
// or a connection that did not send it (reconnecting, with nothing
// buffered).
func mayHaveLanded(err error) bool {
	var api *nats.APIError
	switch {
	case inProcess(err):
		return true
	case errors.As(err, &api), errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrReconnectBufExceeded):
		return false
	}
	return true
}

// Err reports why the node cannot append now, or nil (Node.Err). The hub
// reports NOT_SERVING while it is set.
func (p *Publisher) Err() error { return p.n.Err() }

// Close closes the publisher's connection.
func (p *Publisher) Close() error { return p.wm.Close() }
