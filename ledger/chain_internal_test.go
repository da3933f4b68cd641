package ledger

import (
	"bytes"
	"crypto/sha256"
	"testing"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestAppendValueMatchesProto checks that the writer's split encoding (the
// caller's body, then seq, id and time prepended) gives exactly the bytes
// of proto's deterministic encoding of the whole record, and the chain hash
// SHA-256(prev || value[32:]).
func TestAppendValueMatchesProto(t *testing.T) {
	prev := Hash(sha256.Sum256([]byte("previous")))
	id := ulid.MustParse("01JDQ3V7X9ABCDEFGHJKMNPQRS")
	event := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "u", Session: "s", Reason: "r"}
	for _, tc := range []struct {
		name string
		rec  *eventpb.Record
		seq  uint64
		time int64
	}{
		{"event", &eventpb.Record{Topic: EventsTopic, Body: &eventpb.Record_Event{Event: event}}, 1, 1764000000123456789},
		{"payload and metadata", &eventpb.Record{Topic: "t", MessageUuid: "m", Metadata: map[string]string{"b": "2", "a": "1", "c": ""}, Body: &eventpb.Record_Payload{Payload: []byte{0, 1}}}, 1 << 40, 5},
		{"event with body", &eventpb.Record{Topic: EventsTopic, Body: &eventpb.Record_Event{Event: &eventpb.Event{
			Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "u", Device: "d", Session: "s", Node: "n", Actor: "a", Reason: "r",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:1", HeartbeatMs: 15000}},
		}}}, 4, 4},
		{"empty event", &eventpb.Record{Topic: EventsTopic, Body: &eventpb.Record_Event{Event: &eventpb.Event{}}}, 9, 9},
		{"zero time", &eventpb.Record{Topic: "t"}, 300, 0},
		{"negative time", &eventpb.Record{Topic: "t", Body: &eventpb.Record_Payload{}}, 2, -1},
	} {
		body, err := encodeBody(tc.rec)
		if err != nil {
			t.Fatal(err)
		}
		if ev := tc.rec.GetEvent(); ev != nil && tc.rec.GetTopic() == EventsTopic && len(tc.rec.GetMetadata()) == 0 && tc.rec.GetMessageUuid() == "" {
			evBody, err := encodeEventBody(ev)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(evBody, body) {
				t.Fatalf("%s: encodeEventBody gave %x; encodeBody %x", tc.name, evBody, body)
			}
		}
		got, h := appendValue([]byte("prefix"), prev, tc.seq, &id, tc.time, body)
		if string(got[:6]) != "prefix" {
			t.Fatalf("%s: appendValue overwrote dst's prefix", tc.name)
		}
		got = got[6:]
		whole := proto.Clone(tc.rec).(*eventpb.Record)
		whole.Seq, whole.Id, whole.TimeUnixNano = tc.seq, id[:], tc.time
		pb, err := proto.MarshalOptions{Deterministic: true}.Marshal(whole)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got[headerSize:], pb) {
			t.Fatalf("%s: got record bytes %x; want proto's %x", tc.name, got[headerSize:], pb)
		}
		if got[hashSize] != formatV1 {
			t.Fatalf("%s: got version %d; want %d", tc.name, got[hashSize], formatV1)
		}
		if want := chainHash(prev, got[hashSize:]); h != want || !bytes.Equal(got[:hashSize], want[:]) {
			t.Fatalf("%s: got hash %x (stored %x); want %x", tc.name, h, got[:hashSize], want)
		}
		if _, err := checkValue(tc.seq, prev, got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
	}
}
