package hub

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// newTestServer starts a hub over a fresh ledger and its projections,
// wired as hubd wires them, all closed when the test ends.
func newTestServer(t *testing.T, wrap ...func(Publisher) Publisher) (*Server, *ledger.Store) {
	t.Helper()
	store, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var s *Server
	runner := projections.NewRunner(store, projections.Config{OnChange: func(ch projections.Change) { s.Enforce(ch) }})
	var pub Publisher = ledger.NewPublisher(store)
	for _, w := range wrap {
		pub = w(pub)
	}
	s, err = New(Ports{Publisher: pub, Projection: runner, History: store}, Config{AdminTokens: map[string]string{"0123456789abcdef": "ops"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := runner.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
		if err := runner.Close(); err != nil {
			t.Error(err)
		}
		store.Close()
	})
	return s, store
}

// TestPublishRefusedEventIsInvalidNotUnavailable: an event the ledger
// refuses (a name over its limit) is a bad request, not a failing
// ledger: InvalidArgument, no append failure counted, still serving.
func TestPublishRefusedEventIsInvalidNotUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, store := newTestServer(t)
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: strings.Repeat("u", ledger.MaxNameLen+1), Actor: "ops",
		Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
	_, err := s.publish(ctx, ev)
	if !errors.Is(err, ErrInvalid) || errors.Is(err, ErrLedger) {
		t.Fatalf("publish of an overlong user: %v; want ErrInvalid, not ErrLedger", err)
	}
	if code := toStatus(err); !strings.Contains(code.Error(), "InvalidArgument") {
		t.Errorf("status = %v; want InvalidArgument", code)
	}
	if store.Err() != nil {
		t.Errorf("ledger failed: %v; want it untouched", store.Err())
	}
	if _, err := s.publish(ctx, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: "u", Actor: "ops",
		Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}); err != nil {
		t.Fatalf("a good event after the refused one: %v", err)
	}
}

// TestPublishCancelledIsNotALedgerFailure: a caller that gives up before
// the writer takes its events gets its own context's error; the hub does
// not count or log a failed ledger.
func TestPublishCancelledIsNotALedgerFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := newTestServer(t)
	gone, cancelGone := context.WithCancel(ctx)
	cancelGone()
	// A writer that is free may still take the events (Append's select
	// has both ways ready): try until one is refused.
	refused := 0
	for range 50 {
		_, err := s.publish(gone, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: "u", Actor: "ops",
			Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}})
		if err == nil {
			continue
		}
		refused++
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrLedger) {
			t.Fatalf("publish with a cancelled context: %v; want context.Canceled, not ErrLedger", err)
		}
		if !strings.Contains(toStatus(err).Error(), "Canceled") {
			t.Errorf("status = %v; want Canceled", toStatus(err))
		}
	}
	if refused == 0 {
		t.Fatal("50 publishes with a cancelled context were all taken; want some refused")
	}
	var m dto.Metric
	if err := s.metrics.appendFailures.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 0 {
		t.Errorf("append failures = %v; want 0", got)
	}
}

// unanswered is a cluster's publisher at the moment its stream's leader
// lost its quorum with the messages sent (ledger/cluster makes this for
// real, with NATS servers): the publish of any notify is answered
// "outcome unknown", naming the messages; everything else goes to the
// ledger.
type unanswered struct{ Publisher }

func (u unanswered) PublishStamped(topic string, msgs ...*message.Message) ([]ledger.Stamp, error) {
	var ev eventpb.Event
	if len(msgs) == 1 && proto.Unmarshal(msgs[0].Payload, &ev) == nil && ev.GetType() == eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT {
		return nil, fmt.Errorf("publish to the cluster's log: message %s: %w (nats: timeout)", msgs[0].UUID, ledger.ErrOutcomeUnknown)
	}
	return u.Publisher.PublishStamped(topic, msgs...)
}

// TestOutcomeUnknownStatus: a failed append whose outcome the cluster's
// log cannot tell yet reaches the caller as Unavailable with the
// OUTCOME_UNKNOWN detail naming the message, not as a plain refusal; a
// plain failure stays plain.
func TestOutcomeUnknownStatus(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _ := newTestServer(t, func(p Publisher) Publisher { return unanswered{p} })
	_, err := s.publish(ctx, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, Actor: "ops",
		Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Topic: "t"}}})
	if !errors.Is(err, ErrLedger) || !errors.Is(err, ledger.ErrOutcomeUnknown) {
		t.Fatalf("publish answered outcome unknown: %v; want ErrLedger wrapping ledger.ErrOutcomeUnknown", err)
	}
	st := status.Convert(toStatus(err))
	if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "outcome unknown") {
		t.Fatalf("status %v %q; want Unavailable saying the outcome is unknown", st.Code(), st.Message())
	}
	// As a client reads it, without the hub.
	if ids, ok := hubapi.OutcomeUnknown(st.Err()); !ok || len(ids) != 1 || !strings.Contains(st.Message(), ids[0]) {
		t.Fatalf("status %q, details %v; want ErrorInfo OUTCOME_UNKNOWN naming the one message the error names", st.Message(), st.Details())
	}
	plain := status.Convert(toStatus(fmt.Errorf("%w: %w", ErrLedger, errors.New("publish: refused, nothing published"))))
	if plain.Code() != codes.Unavailable || len(plain.Details()) != 0 {
		t.Fatalf("a plain refusal: %v %v; want Unavailable without details", plain.Code(), plain.Details())
	}
}
