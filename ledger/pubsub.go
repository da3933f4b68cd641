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
	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
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
// message's payload must be a protobuf eventpb.Event; it is stored as
// published (not decoded and encoded again) and indexed. On any other
// topic the payload is stored as is.
type Publisher struct {
	s      *Store
	closed atomic.Bool
}

// NewPublisher returns a Publisher appending to s. Closing it does not close
// s.
func NewPublisher(s *Store) *Publisher { return &Publisher{s: s} }

// Publish appends msgs to topic, all or none, and returns once they are
// durable. On success it sets each message's MetadataSeq, MetadataID and
// MetadataTime to where it landed in the log, as a subscriber sees it. It is
// safe for concurrent use. PublishStamped does the same and returns the
// stamps as values.
//
// The first message's context (Message.Context, set with SetContext)
// bounds the wait for the writer to take the messages, so a caller is not
// stuck behind a hung disk; once taken, Publish waits for the outcome, so a
// cancelled caller never mistakes a durable message for a lost one (as
// Store.Append).
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	stamps, err := p.PublishStamped(topic, msgs...)
	if err != nil {
		return err
	}
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

// PublishStamped is Publish returning where each message landed (seq, id,
// time, hash) instead of writing it into the messages' metadata. The hub
// records its events through it.
func (p *Publisher) PublishStamped(topic string, msgs ...*message.Message) ([]Stamp, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("publish: %w", ErrClosed)
	}
	if topic == "" {
		return nil, fmt.Errorf("publish: %w: empty topic", ErrInvalidEvent)
	}
	if err := checkName("topic", topic); err != nil {
		return nil, fmt.Errorf("publish: %w: %w", ErrInvalidEvent, err)
	}
	recs := make([]pendingRecord, len(msgs))
	for i, msg := range msgs {
		var err error
		if recs[i], err = messageRecord(topic, msg); err != nil {
			return nil, err
		}
	}
	ctx := context.Background()
	if len(msgs) > 0 {
		ctx = msgs[0].Context()
	}
	return p.s.submitPending(ctx, recs)
}

// ValidateMessage reports why the ledger would refuse a message with this
// payload on topic (on EventsTopic: not an event, or an event Append would
// refuse), or nil. A publisher onto a log that others replicate checks
// with it before the log takes the message.
func ValidateMessage(topic string, payload []byte) error {
	_, err := encodeMessage(topic, "", nil, payload)
	return err
}

// messageRecord encodes msg for the writer (see encodeMessage).
func messageRecord(topic string, msg *message.Message) (pendingRecord, error) {
	return encodeMessage(topic, msg.UUID, msg.Metadata, msg.Payload)
}

// encodeMessage encodes a message for the writer: the envelope (topic,
// uuid, metadata), then the payload as the record's event (on EventsTopic,
// checked and indexed, but stored as published) or as its payload. The
// bytes depend on the message alone, so replicas of a shared log store the
// same.
func encodeMessage(topic, uuid string, metadata map[string]string, payload []byte) (pendingRecord, error) {
	env := &eventpb.Record{Topic: topic, MessageUuid: uuid}
	if len(metadata) > 0 {
		env.Metadata = make(map[string]string, len(metadata))
		for k, v := range metadata {
			env.Metadata[k] = v
		}
	}
	rec := pendingRecord{topic: topic}
	field := protowire.Number(7) // Record.payload
	if topic == EventsTopic {
		ev := &eventpb.Event{}
		if err := proto.Unmarshal(payload, ev); err != nil {
			return rec, fmt.Errorf("publish message %s: %w: payload is not an eventpb.Event: %v", uuid, ErrInvalidEvent, err)
		}
		if err := ValidateEvent(ev); err != nil {
			return rec, fmt.Errorf("publish message %s: %w", uuid, err)
		}
		rec.user, rec.session = ev.GetUser(), ev.GetSession()
		field = 8 // Record.event
	}
	body, err := encodeBody(env)
	if err != nil {
		return rec, fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	// The body field comes last in field order, so appending it keeps the
	// canonical encoding.
	body = protowire.AppendTag(body, field, protowire.BytesType)
	rec.body = protowire.AppendBytes(body, payload)
	return rec, nil
}

// Err reports the failure after which the ledger takes no more appends
// (Store.Err), or ErrClosed once the Publisher is closed.
func (p *Publisher) Err() error {
	if p.closed.Load() {
		return ErrClosed
	}
	return p.s.Err()
}

// Close makes later Publish calls fail with ErrClosed. It is idempotent.
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
	buf     []*delivery
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
		for len(g.buf) > 0 && g.buf[0].seq < g.next.Load() {
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
		msg := rec.message()
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
func (g *group) advance(s *Store, rec *delivery) {
	g.next.Store(rec.seq + 1)
	g.buf = g.buf[1:]
	if g.durable != "" {
		s.setOffset(g.durable, rec.seq+1)
	}
}

// readTopic returns up to limit durable records of topic with seq >= from,
// as deliveries: none past the head, so a subscriber (and the projections
// it feeds, which the hub enforces from) never acts on a record before its
// append returned. With nothing new the caller waits for the writer's
// wake-up. A record that cannot be turned into a message is ErrCorrupt:
// skipping it would lose a message, so the subscription ends and says why.
func (s *Store) readTopic(topic string, from uint64, limit int) ([]*delivery, error) {
	var out []*delivery
	// visitIndex applies the bound (and says ErrClosed past it after Close).
	_, err := s.visitIndex(kindTopic, topic, from, 0, limit, func(k, v []byte) error {
		d, err := toDelivery(k, v)
		if err == nil {
			out = append(out, d)
		}
		return err
	})
	return out, err
}

// delivery is one record as a subscription hands it out: the parts of its
// watermill message, copied out of the read transaction. An event's payload
// is its encoding as stored: a subscriber decodes it once (RecordFromMessage).
type delivery struct {
	seq      uint64
	id       ulid.ULID
	time     int64
	uuid     string
	metadata map[string]string
	payload  []byte
}

// message turns d into a new watermill message (a redelivery after a Nack
// is a new message too).
func (d *delivery) message() *message.Message {
	msg := message.NewMessage(d.uuid, d.payload)
	for k, v := range d.metadata {
		msg.Metadata.Set(k, v)
	}
	msg.Metadata.Set(MetadataSeq, strconv.FormatUint(d.seq, 10))
	msg.Metadata.Set(MetadataID, d.id.String())
	msg.Metadata.Set(MetadataTime, time.Unix(0, d.time).UTC().Format(time.RFC3339Nano))
	return msg
}

// toDelivery reads the stored record (key k, value v) into a delivery
// without decoding its event. Anything but the canonical encoding the
// writer produces is decoded fully (DecodeRecord) and its event encoded
// again, so the outcome is the same either way.
func toDelivery(k, v []byte) (*delivery, error) {
	if d, ok := deliveryFast(k, v); ok {
		return d, nil
	}
	r, err := DecodeRecord(k, v)
	if err != nil {
		return nil, err
	}
	d := &delivery{seq: r.Seq, id: r.ID, time: r.Time.UnixNano(), uuid: r.UUID, metadata: r.Metadata, payload: r.Payload}
	if r.Event != nil {
		if d.payload, err = (proto.MarshalOptions{Deterministic: true}).Marshal(r.Event); err != nil {
			return nil, fmt.Errorf("%w: seq %d: encode event: %v", ErrCorrupt, r.Seq, err)
		}
	}
	return d, nil
}

// deliveryFast is toDelivery for a record in the canonical encoding (as
// decodeRawFast checks it), reporting false for anything else.
func deliveryFast(k, v []byte) (*delivery, bool) {
	var raw RawRecord
	if !decodeRawFast(k, v, &raw) {
		return nil, false
	}
	d := &delivery{seq: raw.Seq, id: raw.ID, time: raw.Time.UnixNano()}
	b := v[headerSize:]
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num == 1 || num == 3 {
			_, m := protowire.ConsumeVarint(b)
			b = b[m:]
			continue
		}
		x, m := protowire.ConsumeBytes(b)
		b = b[m:]
		switch num {
		case 5:
			d.uuid = string(x)
		case 6:
			if d.metadata == nil {
				d.metadata = make(map[string]string)
			}
			var key, val string
			for len(x) > 0 {
				f, _, n := protowire.ConsumeTag(x)
				y, m := protowire.ConsumeBytes(x[n:])
				if f == 1 {
					key = string(y)
				} else {
					val = string(y)
				}
				x = x[n+m:]
			}
			d.metadata[key] = val
		case 7, 8:
			d.payload = append([]byte{}, x...)
		}
	}
	return d, true
}

// RecordFromMessage turns a message a Subscriber delivered back into the
// record it carries: the stamp from its metadata and, on EventsTopic, its
// payload decoded as the event. It is the one place a subscriber parses
// what crossed watermill.
func RecordFromMessage(topic string, msg *message.Message) (*Record, error) {
	seq, err := strconv.ParseUint(msg.Metadata.Get(MetadataSeq), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("message %s without a ledger seq: %w", msg.UUID, err)
	}
	id, err := ulid.ParseStrict(msg.Metadata.Get(MetadataID))
	if err != nil {
		return nil, fmt.Errorf("seq %d: bad ledger id: %w", seq, err)
	}
	t, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetadataTime))
	if err != nil {
		return nil, fmt.Errorf("seq %d: bad ledger time: %w", seq, err)
	}
	r := &Record{Seq: seq, ID: id, Time: t.UTC(), Topic: topic, UUID: msg.UUID}
	if topic != EventsTopic {
		r.Payload = msg.Payload
		return r, nil
	}
	r.Event = new(eventpb.Event)
	if err := proto.Unmarshal(msg.Payload, r.Event); err != nil {
		return nil, fmt.Errorf("seq %d: %w", seq, err)
	}
	return r, nil
}
