package ledger

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestUndeliverableRecordIsLogged: a record that cannot be turned into a
// message (its event does not encode: a string that is not UTF-8, which
// Append refuses but a damaged or older file may hold) ends the
// subscription, and a Subscriber with no Logger of its own says so, with
// the seq and the cause, in the Store's log. It used to default to
// watermill's NopLogger: the consumer just stopped.
func TestUndeliverableRecordIsLogged(t *testing.T) {
	var logs bytes.Buffer // only this goroutine logs: deliverOne runs on it
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"), &Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub := NewSubscriber(s, SubscriberConfig{})
	defer sub.Close()
	g := newGroup(7, "")
	g.buf = []*Record{{Seq: 7, Topic: EventsTopic, Event: &eventpb.Event{
		Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "\xff\xfe", Session: "s",
	}}}
	out := make(chan *message.Message, 1)
	if sub.deliverOne(context.Background(), EventsTopic, g, out) {
		t.Fatal("deliverOne of an unencodable record: got true; want the subscription to end")
	}
	if len(out) != 0 {
		t.Fatal("an unencodable record was delivered")
	}
	got := logs.String()
	for _, want := range []string{"level=ERROR", "cannot deliver a record", "seq=7", "invalid UTF-8", EventsTopic} {
		if !strings.Contains(got, want) {
			t.Errorf("log: got %q; want it to contain %q", got, want)
		}
	}
}
