package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sessionledger/sessionledger/ledger"
)

// Metadata the replicator's unmarshaler adds to each delivered message:
// where the stream put it. They are not stored in the record (its seq and
// time fields hold them).
const (
	mdStreamSeq  = "_sessionledger_stream_seq"
	mdStreamTime = "_sessionledger_stream_time"
	mdPending    = "_sessionledger_stream_pending"
)

// RejectedTopic is the topic a replica stores a stream message under
// when it is not a valid event (something other than a hub published to
// the stream's subject): every replica stores it the same way, so the
// seqs stay aligned and the chains equal, and the projections, which
// follow the events topic, never see it.
const RejectedTopic = "sessionledger.rejected"

// maxReplicateBatch bounds the records one Replicate call takes.
const maxReplicateBatch = 4096

// replicator keeps the local ledger a replica of the stream: a watermill
// Subscriber (watermill-nats' JetStream one) over an ordered consumer that
// starts after the ledger's head; the messages it delivers are appended in
// stream order, many per commit, at the stream's seqs.
type replicator struct {
	n *Node

	lag atomic.Uint64
	// base is when the replicator started (a monotonic reading); took is
	// when the subscription last delivered a message and committing is set
	// while a commit runs. The watchdog takes either for a consumer that
	// works, even while a slow commit keeps the ledger's head where it was.
	base       time.Time
	took       atomic.Int64 // nanoseconds since base
	committing atomic.Bool

	waitMu  sync.Mutex
	waiters map[string]chan ledger.Stamp
	// recent remembers the stamps of the last recentStamps records, so a
	// publish of a message the replica already stored (a retry JetStream
	// de-duplicated) gets the original's stamp at once.
	recent    map[string]ledger.Stamp
	recentIDs []string
	recentAt  int
	// doubts are the messages this node's publisher answered "outcome
	// unknown" for, with when: each is settled by a record that shows what
	// became of it (settle). presumed are those settled as not recorded,
	// watched for a while in case one is recorded all the same;
	// presumedWrong counts those that were.
	doubts        map[string]time.Time
	presumed      map[string]time.Time
	presumedWrong atomic.Uint64

	errMu sync.Mutex
	err   error

	subMu  sync.Mutex // guards the current subscription
	sub    *wmjs.Subscriber
	cancel context.CancelFunc
	done   chan struct{}
}

func startReplicator(n *Node) (*replicator, error) {
	r := &replicator{n: n, base: time.Now(), waiters: make(map[string]chan ledger.Stamp),
		recent: make(map[string]ledger.Stamp, recentStamps), recentIDs: make([]string, recentStamps), doubts: make(map[string]time.Time),
		presumed: make(map[string]time.Time)}
	if err := r.subscribe(); err != nil {
		return nil, err
	}
	return r, nil
}

// subscribe starts a subscription of the stream after the ledger's head
// and the goroutine that appends what it delivers.
func (r *replicator) subscribe() error {
	n := r.n
	// A connection of its own: closing a watermill subscriber drains its
	// connection.
	nc, err := n.connect("replicator")
	if err != nil {
		return err
	}
	sub, err := wmjs.NewSubscriber(wmjs.SubscriberConfig{
		Conn:   nc,
		Logger: wmLogger(n.log.With("component", "replicator")),
		// The consumer starts after whatever the ledger holds when it is
		// (re)created: the position is the ledger's, not the server's.
		ResourceInitializer: func(ctx context.Context, js jetstream.JetStream, _ string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
			c, err := js.OrderedConsumer(ctx, n.cfg.Stream, jetstream.OrderedConsumerConfig{
				DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: n.store.Head().Seq + 1,
			})
			return c, nil, err
		},
		Unmarshaler: streamUnmarshaler{},
		// Short pulls with heartbeats: the ordered consumer notices a
		// consumer lost with its server within seconds (the default pull
		// waits 30 s) and starts a new one after the ledger's head.
		ConsumeOptions: []jetstream.PullConsumeOpt{jetstream.PullExpiry(2 * time.Second), jetstream.PullHeartbeat(500 * time.Millisecond),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				n.log.Debug("the replicator's consumer", "err", err)
			})},
		AckAsync:       true, // an ordered consumer keeps no acks: don't wait for one
		AckWaitTimeout: time.Hour,
	})
	if err != nil {
		nc.Close()
		return fmt.Errorf("replicator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, streamSubject)
	if err != nil {
		cancel()
		_ = sub.Close()
		return fmt.Errorf("replicator: subscribe to %s: %w", n.cfg.Stream, err)
	}
	done := make(chan struct{})
	r.subMu.Lock()
	r.sub, r.cancel, r.done = sub, cancel, done
	r.subMu.Unlock()
	go r.run(ctx, msgs, done)
	return nil
}

// restart replaces the subscription with a new one after the ledger's
// head: for a consumer that was lost with its server and that the client
// library has not replaced.
func (r *replicator) restart() error {
	if err := r.close(); err != nil {
		r.n.log.Debug("closing the stalled subscription", "err", err)
	}
	return r.subscribe()
}

// streamUnmarshaler is watermill-nats' default unmarshaler plus where the
// stream put the message. It never fails: watermill-nats would deliver a
// nil message.
type streamUnmarshaler struct{}

func (streamUnmarshaler) Unmarshal(msg jetstream.Msg) (*message.Message, error) {
	m, err := wmjs.DefaultUnmarshaler{}.Unmarshal(msg)
	if err != nil {
		// A header repeated (not from a hub): keep the payload, the seq
		// decides where it goes.
		m = message.NewMessage(msg.Headers().Get(wmnats.WatermillUUIDHdr), msg.Data())
	}
	if md, err := msg.Metadata(); err == nil {
		m.Metadata.Set(mdStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
		m.Metadata.Set(mdStreamTime, strconv.FormatInt(md.Timestamp.UnixNano(), 10))
		m.Metadata.Set(mdPending, strconv.FormatUint(md.NumPending, 10))
	}
	return m, nil
}

// run appends what the subscription delivers. Each message is acked as
// soon as it is taken (the position that matters is the ledger's head);
// what arrives while a commit runs goes into the next one.
func (r *replicator) run(ctx context.Context, msgs <-chan *message.Message, done chan struct{}) {
	defer close(done)
	var batch []ledger.Replicated
	pending := uint64(0) // what the stream said was still coming after the last message
	for {
		var m *message.Message
		var ok bool
		switch {
		case len(batch) == 0:
			select {
			case m, ok = <-msgs:
			case <-ctx.Done():
				return
			}
		case pending > 0 && len(batch) < maxReplicateBatch:
			// More is on its way (catching up, or a burst): wait for it
			// a moment rather than commit a batch of one.
			t := time.NewTimer(batchWait)
			select {
			case m, ok = <-msgs:
				t.Stop()
			case <-t.C:
				if !r.commit(ctx, batch) {
					return
				}
				batch, pending = batch[:0], 0
				continue
			case <-ctx.Done():
				t.Stop()
				return
			}
		default:
			select {
			case m, ok = <-msgs:
			default:
				// Nothing waiting: commit what we have.
				if !r.commit(ctx, batch) {
					return
				}
				batch = batch[:0]
				continue
			}
		}
		if !ok {
			if ctx.Err() == nil {
				r.n.log.Warn("the stream subscription ended; waiting to subscribe again")
			}
			if len(batch) > 0 {
				r.commit(ctx, batch)
			}
			return
		}
		m.Ack()
		r.took.Store(int64(time.Since(r.base)))
		pending = 0
		if p, err := strconv.ParseUint(m.Metadata.Get(mdPending), 10, 64); err == nil {
			pending = p
			r.lag.Store(p)
		}
		rec, err := replicated(m)
		if err != nil {
			r.fail(err)
			return
		}
		want := r.n.store.Head().Seq + uint64(len(batch)) + 1
		switch {
		case rec.Seq < want:
			continue // delivered again after a consumer reset: stored already
		case rec.Seq > want:
			// A message went missing on its way (a consumer replaced
			// mid-flight): stop here; the watchdog subscribes again
			// after the ledger's head.
			r.n.log.Warn("the stream delivered a seq past the ledger's next; waiting to subscribe again", "seq", rec.Seq, "want", want)
			if len(batch) > 0 {
				r.commit(ctx, batch)
			}
			return
		}
		batch = append(batch, rec)
		if len(batch) >= maxReplicateBatch {
			if !r.commit(ctx, batch) {
				return
			}
			batch = batch[:0]
		}
	}
}

// batchWait bounds how long the replicator waits for a message the stream
// said is coming before it commits what it has.
const batchWait = 5 * time.Millisecond

// replicated turns a delivered message into the record the ledger stores.
func replicated(m *message.Message) (ledger.Replicated, error) {
	seq, err := strconv.ParseUint(m.Metadata.Get(mdStreamSeq), 10, 64)
	if err != nil {
		return ledger.Replicated{}, fmt.Errorf("replicator: a message without its stream seq: %w", err)
	}
	nanos, err := strconv.ParseInt(m.Metadata.Get(mdStreamTime), 10, 64)
	if err != nil {
		return ledger.Replicated{}, fmt.Errorf("replicator: seq %d without its stream time: %w", seq, err)
	}
	md := make(map[string]string, len(m.Metadata))
	for k, v := range m.Metadata {
		switch k {
		case mdStreamSeq, mdStreamTime, mdPending:
		default:
			md[k] = v
		}
	}
	// Not a hub's event: the replica keeps it where the projections never
	// look, the same way on every replica (checked once, as it is stored).
	return ledger.Replicated{Seq: seq, Time: time.Unix(0, nanos).UTC(), Topic: ledger.EventsTopic, UUID: m.UUID, Metadata: md, Payload: m.Payload,
		OnInvalid: RejectedTopic}, nil
}

// commit appends batch and hands each waiting publisher its stamp. It
// reports false when the replicator must stop.
func (r *replicator) commit(ctx context.Context, batch []ledger.Replicated) bool {
	r.committing.Store(true)
	stamps, err := r.n.store.Replicate(ctx, batch)
	r.committing.Store(false)
	if err != nil {
		if ctx.Err() == nil {
			r.fail(fmt.Errorf("replicator: append seq %d to %d: %w", batch[0].Seq, batch[len(batch)-1].Seq, err))
		}
		return false
	}
	r.waitMu.Lock()
	for i, rec := range batch {
		if ch, ok := r.waiters[rec.UUID]; ok {
			ch <- stamps[i]
			delete(r.waiters, rec.UUID)
		}
		if len(r.doubts)+len(r.presumed) > 0 {
			r.found(rec.UUID, stamps[i])
		}
		delete(r.recent, r.recentIDs[r.recentAt])
		r.recentIDs[r.recentAt] = rec.UUID
		r.recent[rec.UUID] = stamps[i]
		r.recentAt = (r.recentAt + 1) % len(r.recentIDs)
	}
	if len(r.doubts) > 0 || len(r.presumed) > 0 {
		// After the batch's own doubted messages were found above: a
		// doubted message in the log is before any record that settles
		// it. The stream's own stamps, not the stored times, which a
		// leader's clock running ahead once would keep raised.
		var stamped time.Time
		for _, rec := range batch {
			if rec.Time.After(stamped) {
				stamped = rec.Time
			}
		}
		r.settle(stamped)
	}
	r.waitMu.Unlock()
	return true
}

// recentStamps is how many stored records the replicator remembers by
// message UUID (a few megabytes): a retry comes within seconds.
const recentStamps = 16384

// working reports a subscription that delivered a message within the
// last d, or a commit running now.
func (r *replicator) working(d time.Duration) bool {
	return r.committing.Load() || time.Since(r.base)-time.Duration(r.took.Load()) < d
}

// await registers interest in the message uuid: the channel gets its
// stamp once this replica stores it. Call forget if it is not needed any
// more.
func (r *replicator) await(uuid string) <-chan ledger.Stamp {
	ch := make(chan ledger.Stamp, 1)
	r.waitMu.Lock()
	if st, ok := r.recent[uuid]; ok {
		ch <- st
	} else {
		r.waiters[uuid] = ch
	}
	r.waitMu.Unlock()
	return ch
}

// doubt remembers uuids whose publish was answered "outcome unknown" at
// now: the log may still record them.
func (r *replicator) doubt(uuids []string, now time.Time) {
	r.waitMu.Lock()
	for _, u := range uuids {
		if _, ok := r.recent[u]; !ok {
			r.doubts[u] = now
		}
	}
	r.waitMu.Unlock()
}

// found is told that this replica stored the message uuid at st: a doubt
// about it is settled as recorded after all, and a presumption that it
// was not is proved wrong. The caller holds waitMu.
func (r *replicator) found(uuid string, st ledger.Stamp) {
	if at, ok := r.doubts[uuid]; ok {
		delete(r.doubts, uuid)
		r.n.log.Warn("outcome settled: a message answered \"outcome unknown\" was recorded after all", "message", uuid,
			"seq", st.Seq, "event", st.ID.String(), "answered", at.UTC().Format(time.RFC3339Nano))
	}
	if at, ok := r.presumed[uuid]; ok {
		delete(r.presumed, uuid)
		r.presumedWrong.Add(1)
		r.n.log.Error("a message presumed not recorded was recorded after all: it took longer than SettleAfter to reach the stream's leader (raise SettleAfter past what ends a stalled connection here), or it was published again (a keyed event)",
			"message", uuid, "seq", st.Seq, "event", st.ID.String(), "answered", at.UTC().Format(time.RFC3339Nano))
	}
}

// settle is told that this replica stored records the stream stamped up
// to stamped: every doubt answered more than SettleAfter before that, and
// not stored by now, is presumed never to be recorded. The caller holds
// waitMu.
//
// What the presumption rests on: the stream stamps a message when its
// leader takes it, and the log is one Raft log: a leader that took the
// doubted message commits it before anything it takes later, and once a
// leader without it commits a record, no leader with it can follow. So a
// record taken after the doubted message's last chance to reach a leader
// settles it. That last chance is the part that cannot be proved here: a
// connection whose path stalls delivers what it holds once the path is
// back, until one end gives it up (NATS's pings), so SettleAfter must
// outlast that (DefaultSettleAfter), and the servers' clocks must not
// run far ahead of the nodes'. Where it was too short, the message is
// recorded after its presumption; commit notices, says so and counts it
// (Node.PresumedWrong). A record from before (a retried or keyed publish
// answered from the duplicate window gets the old one back) presumes
// nothing.
func (r *replicator) settle(stamped time.Time) {
	for u, at := range r.doubts {
		if stamped.After(at.Add(r.n.cfg.SettleAfter)) {
			delete(r.doubts, u)
			r.presumed[u] = at
			r.n.log.Warn("outcome presumed: a message answered \"outcome unknown\" is taken as not recorded: the log moved on for SettleAfter without it",
				"message", u, "answered", at.UTC().Format(time.RFC3339Nano), "settle_after", r.n.cfg.SettleAfter, "stamped", stamped.UTC().Format(time.RFC3339Nano))
		}
	}
	for u, at := range r.presumed {
		if stamped.Sub(at) > presumedFor {
			delete(r.presumed, u)
		}
	}
}

// presumedFor is how long a message presumed not recorded is watched for
// in case it is recorded all the same.
const presumedFor = time.Hour

// unsettled lists the messages answered "outcome unknown" whose outcome is
// still open.
func (r *replicator) unsettled() []string {
	r.waitMu.Lock()
	defer r.waitMu.Unlock()
	out := make([]string, 0, len(r.doubts))
	for u := range r.doubts {
		out = append(out, u)
	}
	return out
}

func (r *replicator) forget(uuid string) {
	r.waitMu.Lock()
	delete(r.waiters, uuid)
	r.waitMu.Unlock()
}

func (r *replicator) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
		r.n.log.Error("the replicator stopped; this node no longer follows the cluster's log", "err", err)
	}
	r.errMu.Unlock()
}

// Err is why the replicator stopped, or nil while it follows the stream.
func (r *replicator) Err() error {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	return r.err
}

func (r *replicator) close() error {
	r.subMu.Lock()
	sub, cancel, done := r.sub, r.cancel, r.done
	r.subMu.Unlock()
	cancel()
	err := sub.Close()
	<-done
	if errors.Is(err, nats.ErrConnectionClosed) {
		err = nil
	}
	return err
}
