package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// rawSeeds are stored values as the writer produces them, one per shape of
// record: events with and without a body, watermill messages with metadata
// and payload, an empty event, zero and negative times.
func rawSeeds(t testing.TB) (keys, values [][]byte) {
	id := ulid.MustParse("01JDQ3V7X9ABCDEFGHJKMNPQRS")
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: "u", Device: "d", Session: "s", Node: "n", Actor: "a", Reason: "r",
		Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: 2, CauseEventId: id[:], SupersededBy: "x"}}}
	for i, rec := range []*eventpb.Record{
		{Topic: EventsTopic, Body: &eventpb.Record_Event{Event: ev}},
		{Topic: EventsTopic, MessageUuid: "m", Metadata: map[string]string{"k": "v"}, Body: &eventpb.Record_Event{Event: ev}},
		{Topic: "t", MessageUuid: "m", Metadata: map[string]string{"b": "2", "a": "1", "c": ""}, Body: &eventpb.Record_Payload{Payload: []byte{0, 1}}},
		{Topic: EventsTopic, Body: &eventpb.Record_Event{Event: &eventpb.Event{}}},
		{Topic: "t"},
	} {
		body, err := encodeBody(rec)
		if err != nil {
			t.Fatal(err)
		}
		seq := uint64(1 + i*1000)
		tm := []int64{1764000000123456789, 0, -1}[i%3]
		v, _ := appendValue(nil, Hash(sha256.Sum256(nil)), seq, &id, tm, body)
		keys, values = append(keys, seqKey(seq)), append(values, v)
	}
	return keys, values
}

// checkRawFast fails t if decodeRawFast accepts what DecodeRecord rejects
// (but for event bytes that do not decode, which ScanRaw leaves to its
// caller), or decodes anything but what DecodeRecord does.
func checkRawFast(t *testing.T, key, value []byte) (fast bool) {
	t.Helper()
	var r RawRecord
	if !decodeRawFast(key, value, &r) {
		return false // ScanRaw falls back to DecodeRecord itself
	}
	full, err := DecodeRecord(key, value)
	if err != nil && r.Event != nil && proto.Unmarshal(r.Event, new(eventpb.Event)) != nil {
		return true
	}
	if err != nil {
		t.Fatalf("decodeRawFast accepted %x / %x; DecodeRecord: %v", key, value, err)
	}
	if r.Seq != full.Seq || r.ID != full.ID || !r.Time.Equal(full.Time) || r.Time.Location() != full.Time.Location() || r.Hash != full.Hash {
		t.Fatalf("got seq %d id %s time %s; want %d %s %s", r.Seq, r.ID, r.Time, full.Seq, full.ID, full.Time)
	}
	if (r.Event == nil) != (full.Event == nil) {
		t.Fatalf("got event bytes %x; want event %v", r.Event, full.Event)
	}
	if r.Event != nil {
		var ev eventpb.Event
		if err := proto.Unmarshal(r.Event, &ev); err != nil || !proto.Equal(&ev, full.Event) {
			t.Fatalf("event bytes decode to %v (%v); want %v", &ev, err, full.Event)
		}
	}
	return true
}

// FuzzDecodeRawFast checks ScanRaw's envelope decoder against DecodeRecord
// on arbitrary input.
func FuzzDecodeRawFast(f *testing.F) {
	keys, values := rawSeeds(f)
	for i := range keys {
		f.Add(keys[i], values[i])
	}
	f.Fuzz(func(t *testing.T, key, value []byte) { checkRawFast(t, key, value) })
}

// TestDecodeRawFastMutations runs what FuzzDecodeRawFast checks over
// seeded random mutations of real values on every test run, and checks
// that the writer's own encodings all take the fast path.
func TestDecodeRawFastMutations(t *testing.T) {
	keys, values := rawSeeds(t)
	for i := range keys {
		if !checkRawFast(t, keys[i], values[i]) {
			t.Fatalf("seed %d: the writer's encoding missed the fast path", i)
		}
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	fast, runs := 0, 20000
	if testing.Short() {
		runs = 5000
	}
	for n := 0; n < runs; n++ {
		i := rnd.IntN(len(keys))
		v := append([]byte(nil), values[i]...)
		k := keys[i]
		switch rnd.IntN(5) {
		case 4: // a field repeated in place: proto keeps the last, or merges messages
			v = append(v[:headerSize:headerSize], repeatField(v[headerSize:], rnd.IntN(8))...)
		case 0: // flip a byte past the hash
			v[headerSize+rnd.IntN(len(v)-headerSize)] ^= byte(1 + rnd.IntN(255))
		case 1: // truncate
			v = v[:headerSize+rnd.IntN(len(v)-headerSize)]
		case 2: // another key
			k = binary.BigEndian.AppendUint64(nil, uint64(rnd.IntN(3000)))
		case 3: // a field appended: out of order, repeated or unknown
			v = protowire.AppendTag(v, protowire.Number(1+rnd.IntN(10)), protowire.Type(rnd.IntN(3)))
			v = protowire.AppendVarint(v, uint64(rnd.IntN(3)))
		}
		if checkRawFast(t, k, v) {
			fast++
		}
	}
	t.Logf("%d of %d mutations took the fast path", fast, runs)
}

// repeatField returns b with its i-th field (mod the number of fields)
// written twice in a row, the second time with a changed last byte.
func repeatField(b []byte, i int) []byte {
	var ends []int
	for off := 0; off < len(b); {
		_, _, n := protowire.ConsumeField(b[off:])
		if n < 0 {
			return b
		}
		off += n
		ends = append(ends, off)
	}
	if len(ends) == 0 {
		return b
	}
	i %= len(ends)
	start := 0
	if i > 0 {
		start = ends[i-1]
	}
	f := append([]byte(nil), b[start:ends[i]]...)
	f[len(f)-1] ^= 1
	out := append([]byte(nil), b[:ends[i]]...)
	out = append(out, f...)
	return append(out, b[ends[i]:]...)
}
