package ledger_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// TestPubSub runs watermill's universal Pub/Sub suite against the ledger.
// All publishers and subscribers the suite creates share one ledger file,
// as every process of one hubd would.
func TestPubSub(t *testing.T) {
	s := ledgertest.Open(t, nil)
	features := tests.Features{
		ConsumerGroups:                   true,
		GuaranteedOrder:                  true,
		Persistent:                       true,
		NewSubscriberReceivesOldMessages: true,
	}
	constructor := func(t *testing.T) (message.Publisher, message.Subscriber) {
		return ledger.NewPublisher(s), ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	}
	groupConstructor := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return ledger.NewPublisher(s), ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: group})
	}
	tests.TestPubSub(t, features, constructor, groupConstructor)
}

func TestEventsTopicRoundTrip(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	ev := connected("alice", "s1")
	payload, _ := proto.Marshal(ev)
	published := message.NewMessage(watermill.NewUUID(), payload)
	if err := pub.Publish(ledger.EventsTopic, published); err != nil {
		t.Fatal(err)
	}
	// The publisher learns where its message landed.
	if got, head := published.Metadata.Get(ledger.MetadataSeq), s.Head(); got != "1" || published.Metadata.Get(ledger.MetadataID) != head.ID.String() {
		t.Fatalf("published metadata: seq %q id %q; want 1 and %s", got, published.Metadata.Get(ledger.MetadataID), head.ID)
	}
	// A payload that is not an event is refused, and nothing is written.
	if err := pub.Publish(ledger.EventsTopic, message.NewMessage(watermill.NewUUID(), []byte{0xff, 0xff})); err == nil {
		t.Fatal("garbage on the events topic: got nil error")
	}
	if s.Head().Seq != 1 {
		t.Fatalf("head: got %d; want 1", s.Head().Seq)
	}
	n := 0
	_ = s.ByUser(ctx, "alice", 0, 0, func(*ledger.Record) error { n++; return nil })
	if n != 1 {
		t.Fatalf("published event not indexed by user: got %d; want 1", n)
	}
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, ledger.EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs, "the published event")
	var got eventpb.Event
	if err := proto.Unmarshal(m.Payload, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, ev) || m.Metadata.Get(ledger.MetadataSeq) != "1" {
		t.Fatalf("delivered: got %v seq %q; want %v seq 1", &got, m.Metadata.Get(ledger.MetadataSeq), ev)
	}
	// Encoded once: the log stores the payload as published and hands the
	// same bytes to subscribers, decoding and encoding nothing on the way.
	if !bytes.Equal(m.Payload, payload) {
		t.Errorf("delivered payload %x; want the published bytes %x", m.Payload, payload)
	}
	rec, err := ledger.RecordFromMessage(ledger.EventsTopic, m)
	if err != nil || rec.Seq != 1 || rec.ID != s.Head().ID || !proto.Equal(rec.Event, ev) {
		t.Errorf("RecordFromMessage: %+v, %v; want seq 1, id %s, the event", rec, err, s.Head().ID)
	}
	m.Ack()
}

// TestPublishStampedReturnsStamps: the hub's path gets where its messages
// landed as values, the same the log holds.
func TestPublishStampedReturnsStamps(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	var msgs []*message.Message
	for _, id := range []string{"s1", "s2"} {
		b, _ := proto.Marshal(connected("bo", id))
		msgs = append(msgs, message.NewMessage(watermill.NewUUID(), b))
	}
	stamps, err := pub.PublishStamped(ledger.EventsTopic, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range stamps {
		r, err := s.Get(uint64(i + 1))
		if err != nil || st.Seq != r.Seq || st.ID != r.ID || !st.Time.Equal(r.Time) || st.Hash != r.Hash {
			t.Errorf("stamp %d = %+v; want the record's %+v (%v)", i, st, r, err)
		}
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishStamped(ledger.EventsTopic, msgs[0]); !errors.Is(err, ledger.ErrClosed) {
		t.Errorf("publish after Close: %v; want ErrClosed", err)
	}
}

// TestConsumerGroupOffsetIsDurable acks some messages, reopens the file and
// checks the group resumes after the last ack, while a new group starts at
// StartFrom.
func TestConsumerGroupOffsetIsDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	for i := 1; i <= 10; i++ {
		if err := pub.Publish("jobs", message.NewMessage(strconv.Itoa(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	read := func(s *ledger.Store, cfg ledger.SubscriberConfig, n int) []string {
		t.Helper()
		sub := ledger.NewSubscriber(s, cfg)
		defer sub.Close()
		c, cancel := context.WithCancel(ctx)
		defer cancel()
		msgs, err := sub.Subscribe(c, "jobs")
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for len(ids) < n {
			select {
			case m := <-msgs:
				ids = append(ids, m.UUID)
				m.Ack()
			case <-time.After(5 * time.Second):
				t.Fatalf("got %v; want %d messages", ids, n)
			}
		}
		return ids
	}
	if got := read(s, ledger.SubscriberConfig{ConsumerGroup: "g"}, 4); len(got) != 4 || got[3] != "4" {
		t.Fatalf("first read: got %v", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if off, _ := s.GroupOffset("jobs", "g"); off != 5 {
		t.Fatalf("offset after reopen: got %d; want 5", off)
	}
	if got := read(s, ledger.SubscriberConfig{ConsumerGroup: "g"}, 2); got[0] != "5" || got[1] != "6" {
		t.Fatalf("after reopen: got %v; want [5 6]", got)
	}
	if got := read(s, ledger.SubscriberConfig{ConsumerGroup: "new", StartFrom: 8}, 3); got[0] != "8" || got[2] != "10" {
		t.Fatalf("new group from seq 8: got %v; want [8 9 10]", got)
	}

	// A member waiting for new messages must not block offset queries.
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "new"})
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, "jobs"); err != nil {
		t.Fatal(err)
	}
	got := make(chan uint64, 1)
	go func() { off, _ := s.GroupOffset("jobs", "new"); got <- off }()
	select {
	case off := <-got:
		if off != 11 {
			t.Fatalf("offset of group new: got %d; want 11", off)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("GroupOffset blocked while a member waits for messages")
	}
}

// TestAckBeforeCloseIsDurable: an Ack that returned before the
// subscription ended is in the file after reopen, however it ended: by
// Store.Close alone (which must end the subscriptions and wait for them
// before the writer's final commit), by cancelling the subscription's
// context, or by Subscriber.Close. The subscription is left parked on its
// send before the message is taken, so that the Ack and the end reach its
// select together and the select may pick either. On the code before the
// fix, 40 rounds of each lost 39, 14 and 18 acks (Store.Close let the
// writer's final commit run before the subscription recorded the ack; the
// subscription dropped an ack whose select picked the end); the test takes
// about a second.
func TestAckBeforeCloseIsDurable(t *testing.T) {
	within := func(what string, fn func() error) {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not return", what)
		}
	}
	ends := map[string]func(s *ledger.Store, sub *ledger.Subscriber, cancel context.CancelFunc) error{
		"Store.Close": func(s *ledger.Store, sub *ledger.Subscriber, cancel context.CancelFunc) error {
			err := s.Close()
			sub.Close()
			return err
		},
		"cancel": func(s *ledger.Store, sub *ledger.Subscriber, cancel context.CancelFunc) error {
			cancel()
			sub.Close()
			return s.Close()
		},
		"Subscriber.Close": func(s *ledger.Store, sub *ledger.Subscriber, cancel context.CancelFunc) error {
			sub.Close()
			return s.Close()
		},
	}
	const rounds = 40
	for name, end := range ends {
		lost := 0
		for i := 0; i < rounds; i++ {
			path := filepath.Join(t.TempDir(), "ledger.db")
			s, err := ledger.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ledger.NewPublisher(s).Publish("jobs", message.NewMessage("1", nil)); err != nil {
				t.Fatal(err)
			}
			sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "g"})
			c, cancel := context.WithCancel(ctx)
			in, err := sub.Subscribe(c, "jobs")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Millisecond) // the subscription reaches its send and parks
			receive(t, in, "the published message").Ack()
			within(name, func() error { return end(s, sub, cancel) })
			cancel()
			s, err = ledger.Open(path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if off, err := s.GroupOffset("jobs", "g"); err != nil || off != 2 {
				lost++
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		if lost > 0 {
			t.Errorf("ended by %s: %d of %d acks that returned before it are not in the file", name, lost, rounds)
		}
	}
}

func TestNackRedeliversSameMessage(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	_ = pub.Publish("t", message.NewMessage("a", []byte("1")), message.NewMessage("b", []byte("2")))
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	defer sub.Close()
	msgs, _ := sub.Subscribe(ctx, "t")
	var got []string
	for i := 0; i < 4; i++ {
		m := receive(t, msgs, fmt.Sprintf("delivery %d", i+1))
		got = append(got, m.UUID)
		if i < 2 {
			m.Nack()
		} else {
			m.Ack()
		}
	}
	if want := "[a a a b]"; fmtSlice(got) != want {
		t.Fatalf("deliveries: got %v; want %s", got, want)
	}
}

// receive returns the next message on msgs, failing the test if msgs is
// closed or nothing comes within 5s; what says what was awaited.
func receive(t *testing.T, msgs <-chan *message.Message, what string) *message.Message {
	t.Helper()
	select {
	case m, ok := <-msgs:
		if !ok {
			t.Fatalf("%s: the subscription ended", what)
		}
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing delivered within 5s", what)
		return nil
	}
}

func fmtSlice(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}

// TestGroupOffsetDoesNotCreateGroup: asking where a group is must not
// decide where it starts. GroupOffset of a group nobody subscribed yet used
// to cache a cursor at seq 1, and the group's first subscription with
// StartFrom 8 was then delivered seq 1.
func TestGroupOffsetDoesNotCreateGroup(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	for i := 1; i <= 10; i++ {
		if err := pub.Publish("jobs", message.NewMessage(strconv.Itoa(i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
	}
	if off, err := s.GroupOffset("jobs", "fresh"); err != nil || off != 1 {
		t.Fatalf("offset of a group that never subscribed: got %d, %v; want 1", off, err)
	}
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "fresh", StartFrom: 8})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	m := receive(t, msgs, "first delivery to the new group")
	if got := m.Metadata.Get(ledger.MetadataSeq); got != "8" {
		t.Fatalf("first delivery to the new group: got seq %s; want 8 (StartFrom)", got)
	}
	m.Ack()
	// Now the group exists: its offset is its position. The next delivery
	// shows the ack was taken.
	receive(t, msgs, "second delivery to the new group")
	if off, err := s.GroupOffset("jobs", "fresh"); err != nil || off != 9 {
		t.Fatalf("offset after one ack: got %d, %v; want 9", off, err)
	}
}

// TestPublishHonoursMessageContext: with the writer stuck in a commit (a
// hung disk), Publish gives up when the message's context ends instead of
// waiting forever; the stuck publish still completes once the disk does.
func TestPublishHonoursMessageContext(t *testing.T) {
	s := ledgertest.Open(t, nil)
	pub := ledger.NewPublisher(s)
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.SetFailpoint(func() error {
		once.Do(func() {
			close(stuck)
			<-release
		})
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- pub.Publish("jobs", message.NewMessage("a", []byte("1"))) }()
	<-stuck

	msg := message.NewMessage("b", []byte("2"))
	c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	msg.SetContext(c)
	start := time.Now()
	err := pub.Publish("jobs", msg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("publish behind a hung commit: got %v; want the message's context error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("publish took %v to give up; want about the 50ms deadline", d)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("the publish that was being committed: %v", err)
	}
	if h := s.Head(); h.Seq != 1 {
		t.Fatalf("head: got %d; want 1 (only the first message)", h.Seq)
	}
}

// TestAcksShareCommits: an Ack costs no commit of its own. Offsets ride
// along with the next record commit, or are flushed alone after
// OffsetFlushDelay, and Close writes whatever is left. Offsets-only commits
// do not wake readers.
func TestAcksShareCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, &ledger.Options{OffsetFlushDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	var msgs []*message.Message
	for i := 1; i <= 51; i++ {
		msgs = append(msgs, message.NewMessage(strconv.Itoa(i), []byte("x")))
	}
	if err := pub.Publish("jobs", msgs...); err != nil {
		t.Fatal(err)
	}
	commits := s.Stats().Commits
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "g"})
	in, err := sub.Subscribe(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 51; i++ {
		m := receive(t, in, fmt.Sprintf("delivery %d", i))
		if i < 51 {
			m.Ack() // the 51st delivery shows the 50th ack was taken
		}
	}
	if got := s.Stats().Commits - commits; got != 0 {
		t.Errorf("commits for 50 acks with an hour's flush delay: got %d; want 0", got)
	}
	if off, err := s.StoredOffset("jobs", "g"); err != nil || off != 0 {
		t.Errorf("stored offset before any record commit: got %d, %v; want 0 (none yet)", off, err)
	}
	changed := s.Changed()
	if err := pub.Publish("other", message.NewMessage("o", nil)); err != nil {
		t.Fatal(err)
	}
	if off, err := s.StoredOffset("jobs", "g"); err != nil || off != 51 {
		t.Errorf("stored offset after a record commit: got %d, %v; want 51 (rode along)", off, err)
	}
	if got := s.Stats().Commits - commits; got != 1 {
		t.Errorf("commits: got %d; want the one record commit", got)
	}
	select {
	case <-changed:
	default:
		t.Error("a record commit did not wake readers")
	}
	sub.Close() // the 51st, never acked, is redelivered to the next member
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = ledger.Open(path, &ledger.Options{OffsetFlushDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if off, err := s.GroupOffset("jobs", "g"); err != nil || off != 51 {
		t.Fatalf("offset after reopen: got %d, %v; want 51", off, err)
	}

	// With a short delay the offset is flushed alone, without waking readers.
	sub = ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "g"})
	defer sub.Close()
	in, err = sub.Subscribe(ctx, "jobs")
	if err != nil {
		t.Fatal(err)
	}
	changed = s.Changed()
	m := receive(t, in, "redelivery of the unacked message")
	if got := m.Metadata.Get(ledger.MetadataSeq); got != "51" {
		t.Fatalf("redelivery: got seq %s; want 51", got)
	}
	m.Ack()
	deadline := time.Now().Add(5 * time.Second)
	for off, _ := s.StoredOffset("jobs", "g"); off != 52; off, _ = s.StoredOffset("jobs", "g") {
		if time.Now().After(deadline) {
			t.Fatalf("stored offset: got %d; want 52 within the flush delay", off)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-changed:
		t.Error("an offsets-only commit woke readers")
	default:
	}
}

// TestDamagedRecordEndsSubscriptionLoudly: a subscription whose read meets
// a record that does not decode ends (skipping it would lose a message) and,
// with no Logger of its own, says why in the Store's log, seq included.
func TestDamagedRecordEndsSubscriptionLoudly(t *testing.T) {
	path := tamperFixture(t)
	damage(t, path, func(log *bolt.Bucket) error {
		v := append([]byte(nil), log.Get(key(50))...)
		return log.Put(key(50), append(v[:33], 0xff, 0xff)) // hash and version, then no protobuf
	})
	var logs syncbuf.Buffer
	s, err := ledger.Open(path, &ledger.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, ledger.EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case m, ok := <-msgs:
			if !ok {
				open = false
				break
			}
			if seq, _ := strconv.ParseUint(m.Metadata.Get(ledger.MetadataSeq), 10, 64); seq >= 50 {
				t.Fatalf("delivered seq %d, at or past the damaged record", seq)
			}
			m.Ack()
		case <-deadline:
			t.Fatal("the subscription did not end at the damaged record")
		}
	}
	if got := logs.String(); !strings.Contains(got, "level=ERROR") || !strings.Contains(got, "subscription read failed") || !strings.Contains(got, "seq 50") {
		t.Errorf("log: got %q; want an error naming seq 50", got)
	}
}
