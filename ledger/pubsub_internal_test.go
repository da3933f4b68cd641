package ledger

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestUndecodableEventIsNamedBySeq: a stored event that does not decode
// (a string that is not UTF-8, which Publish and Append refuse but a
// damaged or older file may hold) is delivered as stored, and
// RecordFromMessage, the one place a consumer decodes it, says which seq
// and why: the projections stop there, loudly, instead of skipping it.
func TestUndecodableEventIsNamedBySeq(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "ledger.db"), &Options{Logger: slog.New(slog.NewTextHandler(&bytes.Buffer{}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ev []byte
	ev = protowire.AppendTag(ev, 1, protowire.VarintType)
	ev = protowire.AppendVarint(ev, uint64(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED))
	ev = protowire.AppendTag(ev, 2, protowire.BytesType)
	ev = protowire.AppendString(ev, "\xff\xfe")
	body := protowire.AppendTag(append([]byte{}, eventsTopicField...), 8, protowire.BytesType)
	body = protowire.AppendBytes(body, ev)
	ctx := context.Background()
	if _, err := s.submitPending(ctx, []pendingRecord{{body: body, topic: EventsTopic}}); err != nil {
		t.Fatal(err)
	}
	sub := NewSubscriber(s, SubscriberConfig{})
	defer sub.Close()
	msgs, err := sub.Subscribe(ctx, EventsTopic)
	if err != nil {
		t.Fatal(err)
	}
	m := <-msgs
	if !bytes.Equal(m.Payload, ev) {
		t.Fatalf("payload: got %x; want the stored event %x", m.Payload, ev)
	}
	_, err = RecordFromMessage(EventsTopic, m)
	if err == nil || !strings.Contains(err.Error(), "seq 1") || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("RecordFromMessage: got %v; want an error naming seq 1 and the invalid UTF-8", err)
	}
	m.Ack()
}
