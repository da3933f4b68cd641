package ledger

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Metadata keys the Subscriber adds to every delivered message, besides the
// metadata it was published with.
const (
	MetadataSeq  = "ledger_seq"  // decimal seq
	MetadataID   = "ledger_id"   // ULID
	MetadataTime = "ledger_time" // RFC 3339 with nanoseconds
)

var (
	_ message.Publisher  = (*Publisher)(nil)
	_ message.Subscriber = (*Subscriber)(nil)
)

// Publisher is the ledger's watermill Publisher. Publish appends the
// messages durably (group commit) before it returns. On EventsTopic a
// message's payload must be a protobuf eventpb.Event; it is stored typed and
// indexed. On any other topic the payload is stored as is.
type Publisher struct {
	s      *Store
	closed atomic.Bool
}

// NewPublisher returns a Publisher appending to s. Closing it does not close
// s.
func NewPublisher(s *Store) *Publisher { return &Publisher{s: s} }

// Publish appends msgs to topic, all or none, and returns once they are
// durable. On success it sets each message's MetadataSeq, MetadataID and
// MetadataTime to where it landed in the log. It is safe for concurrent use.
//
// The first message's context (Message.Context, set with SetContext)
// bounds the wait for the writer to take the messages, so a caller is not
// stuck behind a hung disk; once taken, Publish waits for the outcome, so a
// cancelled caller never mistakes a durable message for a lost one (as
// Store.Append).
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return errors.New("publish: publisher closed")
	}
	if topic == "" {
		return errors.New("publish: empty topic")
	}
	if err := checkName("topic", topic); err != nil {
		return fmt.Errorf("publish: %w: %w", ErrInvalidEvent, err)
	}
	recs := make([]*eventpb.Record, len(msgs))
	for i, msg := range msgs {
		rec := &eventpb.Record{Topic: topic, MessageUuid: msg.UUID}
		if len(msg.Metadata) > 0 {
			rec.Metadata = make(map[string]string, len(msg.Metadata))
			for k, v := range msg.Metadata {
				rec.Metadata[k] = v
			}
		}
		if topic == EventsTopic {
			ev := &eventpb.Event{}
			if err := proto.Unmarshal(msg.Payload, ev); err != nil {
				return fmt.Errorf("publish message %s: %w: payload is not an eventpb.Event: %v", msg.UUID, ErrInvalidEvent, err)
			}
			if err := ValidateEvent(ev); err != nil {
				return fmt.Errorf("publish message %s: %w", msg.UUID, err)
			}
			rec.Body = &eventpb.Record_Event{Event: ev}
		} else {
			rec.Body = &eventpb.Record_Payload{Payload: append([]byte{}, msg.Payload...)}
		}
		recs[i] = rec
	}
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context()
	}
	stamps, err := p.s.submit(ctx, recs)
	if err != nil {
		return err
	}
	// Tell the publisher where its messages landed, as a subscriber sees it.
	for i, msg := range msgs {
		if msg.Metadata == nil {
			msg.Metadata = make(message.Metadata)
		}
		msg.Metadata.Set(MetadataSeq, strconv.FormatUint(stamps[i].Seq, 10))
		msg.Metadata.Set(MetadataID, stamps[i].ID.String())
		msg.Metadata.Set(MetadataTime, stamps[i].Time.Format(time.RFC3339Nano))
	}
	return nil
}

// Close makes later Publish calls fail. It is idempotent.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// ConsumerGroup names a group whose offset is durable in the ledger
	// file: subscriptions of the same group, in this process and across
	// restarts, share one position per topic, and each message goes to one
	// of them. Empty means no group: every Subscribe reads the topic on its
	// own from StartFrom and stores nothing.
	ConsumerGroup string
	// StartFrom is the seq a subscription without a stored offset starts at
	// (0 or 1: the beginning of the log).
	StartFrom uint64
	// NackResendDelay is how long to wait before redelivering a Nacked
	// message (default 0: at once).
	NackResendDelay time.Duration
	// Logger receives why a subscription ended on its own: a read that
	// failed, a record that cannot be turned into a message (with its
	// seq). Default: the Store's Options.Logger.
	Logger watermill.LoggerAdapter
}

// Subscriber is the ledger's watermill Subscriber: persistent, ordered
// (one message in flight per subscription, or per consumer group), at least
// once. Ack advances the position, Nack redelivers the same message.
// Subscriptions are woken by the writer on commit, not by polling.
type Subscriber struct {
	s      *Store
	cfg    SubscriberConfig
	mu     sync.Mutex
	closed bool
	done   chan struct{}
	wg     sync.WaitGroup
}

// NewSubscriber returns a Subscriber reading s. Closing it does not close s.
func NewSubscriber(s *Store, cfg SubscriberConfig) *Subscriber {
	if cfg.Logger == nil {
		// Not watermill's NopLogger: a subscription that ends on a damaged
		// record must say which and why, or its consumer just stops.
		cfg.Logger = watermill.NewSlogLogger(s.opts.Logger)
	}
	return &Subscriber{s: s, cfg: cfg, done: make(chan struct{})}
}

// group is a shared read position on one topic. turn is a one-token
// semaphore: the holder reads, delivers and waits for the ack, so a group
// has one message in flight and keeps log order.
type group struct {
	turn    chan struct{}
	next    atomic.Uint64 // written only by the turn holder; read by GroupOffset
	durable string        // offsets-bucket key; empty for a private cursor
	buf     []*Record
}

func newGroup(next uint64, durable string) *group {
	g := &group{turn: make(chan struct{}, 1), durable: durable}
	g.next.Store(next)
	g.turn <- struct{}{}
	return g
}

// Subscribe streams the messages of topic from the subscription's position.
// The channel closes when ctx is done, the Subscriber is closed or the
// ledger is closed.
func (sub *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.closed {
		return nil, errors.New("subscribe: subscriber closed")
	}
	if sub.s.Closed() {
		return nil, ErrClosed
	}
	if err := checkName("topic", topic); err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if err := checkName("consumer group", sub.cfg.ConsumerGroup); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	g, err := sub.s.group(topic, sub.cfg.ConsumerGroup, sub.cfg.StartFrom)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	// Store.Close waits for the subscription too, so that what it records
	// as it ends (deliverOne) is written by Close's final commit.
	if err := sub.s.addSubscription(2); err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", topic, err)
	}
	out := make(chan *message.Message)
	// One context ends the subscription whichever way it ends: the caller's
	// ctx, Subscriber.Close or Store.Close.
	ctx, cancel := context.WithCancel(ctx)
	sub.wg.Add(2)
	go func() {
		defer sub.wg.Done()
		defer sub.s.subs.Done()
		select {
		case <-ctx.Done():
		case <-sub.done:
		case <-sub.s.quit:
		}
		cancel()
	}()
	go func() {
		defer sub.wg.Done()
		defer sub.s.subs.Done()
		defer close(out)
		defer cancel()
		sub.run(ctx, topic, g, out)
	}()
	return out, nil
}

// Close ends every subscription and waits for them to stop. Unacked
// messages are redelivered to the next subscription of their group. It is
// idempotent.
func (sub *Subscriber) Close() error {
	sub.mu.Lock()
	if !sub.closed {
		sub.closed = true
		close(sub.done)
	}
	sub.mu.Unlock()
	sub.wg.Wait()
	return nil
}

// group returns the shared cursor of (topic, name), loading its durable
// offset (clamped to head+1 if it points past the head, with a warning,
// counted in Stats.OffsetsClamped), or a private cursor when name is empty.
func (s *Store) group(topic, name string, start uint64) (*group, error) {
	if start == 0 {
		start = 1
	}
	if name == "" {
		return newGroup(start, ""), nil
	}
	key := offsetKey(topic, name)
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if g, ok := s.groups[key]; ok {
		return g, nil
	}
	next, err := s.storedOffset(key, start)
	if err != nil {
		return nil, err
	}
	s.offsetMu.Lock()
	if p, ok := s.pendingOffsets[key]; ok {
		next = p
	}
	s.offsetMu.Unlock()
	// Offsets only ever come from acks of durable records, so one past
	// head+1 means the file was damaged, edited or truncated at its tail:
	// the records the group would wait for are not the ones it acked, and
	// waiting for the log to grow past the offset would skip every new
	// record. Start after the head instead, and say so.
	if head := s.Head().Seq; next > head+1 {
		s.offsetsClamped.Add(1)
		s.opts.Logger.Warn("ledger: consumer-group offset is past the head of the log (a damaged, edited or truncated file); the group starts after the head",
			"topic", topic, "group", name, "offset", next, "head", head, "clamped_to", head+1)
		next = head + 1
	}
	g := newGroup(next, key)
	s.groups[key] = g
	return g, nil
}

// GroupOffset returns the next seq consumer group name will read on topic:
// its position in this process, or its durable offset, or 1 when it has
// none (a first subscription of the group then starts at its StartFrom).
// It only reads: asking about a group does not create it, so it does not
// fix where the group's first subscription starts.
func (s *Store) GroupOffset(topic, name string) (uint64, error) {
	if s.Closed() {
		// A cached cursor would still answer: say ErrClosed, as every
		// call after Close does.
		return 0, ErrClosed
	}
	key := offsetKey(topic, name)
	s.groupsMu.Lock()
	defer s.groupsMu.Unlock()
	if g, ok := s.groups[key]; ok {
		return g.next.Load(), nil
	}
	// A group this process has no cursor for has no pending offset either
	// (only cursors ack), so the stored offset is the whole answer.
	return s.storedOffset(key, 1)
}

// offsetKey is the offsets-bucket key of consumer group name on topic.
func offsetKey(topic, name string) string { return string(indexPrefix(topic)) + name }

// storedOffset is the durable offset stored under key, or def if there is
// none.
func (s *Store) storedOffset(key string, def uint64) (uint64, error) {
	next := def
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketOffsets).Get([]byte(key)); len(v) == 8 {
			next = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return next, err
}

// setOffset records a group's new position for the writer's next record
// commit, or its offset flush a short time later (writeLoop).
func (s *Store) setOffset(key string, next uint64) {
	s.offsetMu.Lock()
	if s.pendingOffsets == nil {
		s.pendingOffsets = make(map[string]uint64)
	}
	s.pendingOffsets[key] = next
	s.offsetMu.Unlock()
	select {
	case s.offsetKick <- struct{}{}:
	default:
	}
}

func (s *Store) takePendingOffsets() map[string]uint64 {
	s.offsetMu.Lock()
	defer s.offsetMu.Unlock()
	p := s.pendingOffsets
	s.pendingOffsets = nil
	return p
}

// run delivers messages until ctx (the subscription) ends.
func (sub *Subscriber) run(ctx context.Context, topic string, g *group, out chan<- *message.Message) {
	for {
		select {
		case <-g.turn:
		case <-ctx.Done():
			return
		}
		ok := sub.deliverOne(ctx, topic, g, out)
		g.turn <- struct{}{}
		if !ok || ctx.Err() != nil {
			return
		}
	}
}

// deliverOne waits for the group's next record, delivers it and waits for
// its ack (advance) or nack (redeliver). It reports false when the
// subscription must end. The caller holds g.turn.
func (sub *Subscriber) deliverOne(ctx context.Context, topic string, g *group, out chan<- *message.Message) bool {
	for {
		for len(g.buf) > 0 && g.buf[0].Seq < g.next.Load() {
			g.buf = g.buf[1:]
		}
		if len(g.buf) > 0 {
			break
		}
		changed := sub.s.Changed()
		recs, err := sub.s.readTopic(topic, g.next.Load(), 256)
		if err != nil {
			if !sub.s.Closed() {
				sub.cfg.Logger.Error("ledger subscription read failed", err, watermill.LogFields{"topic": topic})
			}
			return false
		}
		if len(recs) > 0 {
			g.buf = recs
			break
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
	rec := g.buf[0]
	for {
		msg, err := toMessage(rec)
		if err != nil {
			// Skipping it would lose a message: end the subscription, as a
			// failed read does, and say why.
			sub.cfg.Logger.Error("ledger subscription cannot deliver a record", err, watermill.LogFields{"topic": topic, "seq": rec.Seq})
			return false
		}
		msgCtx, cancel := context.WithCancel(ctx)
		msg.SetContext(msgCtx)
		select {
		case out <- msg:
		case <-ctx.Done():
			cancel()
			return false
		}
		select {
		case <-msg.Acked():
			cancel()
			g.advance(sub.s, rec)
			return true
		case <-msg.Nacked():
			cancel()
			if d := sub.cfg.NackResendDelay; d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return false
				}
			}
		case <-ctx.Done():
			cancel()
			// The Ack may have come first and be waiting in this select
			// with the end of the subscription, which select may pick: an
			// Ack that returned before Close (or the cancel) counts, and
			// Store.Close writes the offset recorded here.
			select {
			case <-msg.Acked():
				g.advance(sub.s, rec)
			default:
			}
			return false
		}
	}
}

// advance moves g past rec, which was acked, and records the group's new
// offset for the writer. The caller holds g.turn and rec is g.buf[0].
func (g *group) advance(s *Store, rec *Record) {
	g.next.Store(rec.Seq + 1)
	g.buf = g.buf[1:]
	if g.durable != "" {
		s.setOffset(g.durable, rec.Seq+1)
	}
}

// readTopic returns up to limit durable records of topic with seq >= from:
// none past the head, so a subscriber (and the projections it feeds, which
// the hub enforces from) never acts on a record before its append returned.
// With nothing new the caller waits for the writer's wake-up.
func (s *Store) readTopic(topic string, from uint64, limit int) ([]*Record, error) {
	// readIndex applies the bound (and says ErrClosed past it after Close).
	recs, _, err := s.readIndex(kindTopic, topic, from, 0, limit)
	return recs, err
}

// toMessage turns a record into the watermill message a subscriber sees.
func toMessage(r *Record) (*message.Message, error) {
	payload := r.Payload
	if r.Event != nil {
		var err error
		payload, err = proto.MarshalOptions{Deterministic: true}.Marshal(r.Event)
		if err != nil {
			return nil, fmt.Errorf("%w: seq %d: encode event: %v", ErrCorrupt, r.Seq, err)
		}
	}
	msg := message.NewMessage(r.UUID, payload)
	for k, v := range r.Metadata {
		msg.Metadata.Set(k, v)
	}
	msg.Metadata.Set(MetadataSeq, strconv.FormatUint(r.Seq, 10))
	msg.Metadata.Set(MetadataID, r.ID.String())
	msg.Metadata.Set(MetadataTime, r.Time.Format(time.RFC3339Nano))
	return msg, nil
}
