package projections

import (
	"math/rand/v2"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// decodeSeeds are encoded events of every type, with every field set.
func decodeSeeds(t testing.TB) [][]byte {
	id := []byte("0123456789abcdef")
	evs := []*eventpb.Event{
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{
			RemoteAddr: "10.0.0.1:5", HeartbeatMs: 15000, Supersedes: []string{"a", "b"}}}},
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{
			PreviousSession: "p", LastAckedSeq: 9, RemoteAddr: "r", HeartbeatMs: -3, Supersedes: []string{"c"}}}},
		{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{
			Target: 2, Topic: "chat", Payload: []byte{0xff, 0}}}},
		{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{
			Target: 3, Mode: 2, Reconnect: 3, ReconnectAfterMs: 30000}}},
		{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: 1 << 60}}},
		{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}},
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{
			Cause: 4, CauseEventId: id, SupersededBy: "n", Reconnect: 2, ReconnectAfterMs: 7}}},
		{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{
			Code: "banned", Count: 3, RemoteAddr: "r", CauseEventId: id}}},
		// Issue 18: tokens, revocations, refusals.
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{
			RemoteAddr: "r", Token: &eventpb.ClientToken{Id: "jti-1", IssuedUnixNano: 1 << 60, ExpiresUnixNano: 1<<60 + 9}}}},
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{
			PreviousSession: "p", Supersedes: []string{"c"}, Token: &eventpb.ClientToken{Id: "jti-2", ExpiresUnixNano: 5}}}},
		{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{
			Target: 2, Reconnect: 2, RefuseConnectsMs: 600000}}},
		{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{
			TokenId: "jti-1", IssuedBeforeUnixNano: 3, UntilUnixNano: 1 << 61}}},
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{
			Token: &eventpb.ClientToken{Id: "jti-3", IssuedUnixNano: 1, ExpiresUnixNano: 2}}}},
		{Type: eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, Body: &eventpb.Event_AdminCallRefused{AdminCallRefused: &eventpb.AdminCallRefused{
			Method: "/x/Kick", Role: "auditor", Needs: "operator", Count: 2, RemoteAddr: "r"}}},
		{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED, Body: &eventpb.Event_TokenRefreshRefused{TokenRefreshRefused: &eventpb.TokenRefreshRefused{
			Code: "other_user", Token: &eventpb.ClientToken{Id: "j"}, TokenUser: "eve", TokenDevice: "pc"}}},
		{Type: 99},
		{},
		// A type with another type's body.
		{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: 5}}},
	}
	var out [][]byte
	for _, ev := range evs {
		if ev.Type != 0 {
			ev.User, ev.Device, ev.Session, ev.Node, ev.Actor, ev.Reason = "user-1", "ios", "s-1", "hubd-1", "ops", "why"
		}
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkDecode fails t unless eventSlot.decode gives what Apply would read
// from proto.Unmarshal's decoding of b: the whole event for the types Apply
// reads, the type for the rest; and an error exactly when proto.Unmarshal
// fails. It reports whether decode took its fast path.
func checkDecode(t *testing.T, sl *eventSlot, in interner, b []byte) (fast bool) {
	t.Helper()
	var want eventpb.Event
	wantErr := proto.Unmarshal(b, &want)
	_, fast = sl.decodeFast(b, in)
	got, err := sl.decode(b, in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decode(%x): error %v; proto.Unmarshal: %v", b, err, wantErr)
	}
	if err != nil {
		return fast
	}
	if got.GetType() != want.GetType() {
		t.Fatalf("decode(%x): type %v; want %v", b, got.GetType(), want.GetType())
	}
	if reducerType(want.GetType()) && !proto.Equal(got, &want) {
		t.Fatalf("decode(%x):\ngot  %v\nwant %v", b, got, &want)
	}
	return fast
}

// FuzzEventSlotDecode checks the reducer's decoder against proto.Unmarshal
// on arbitrary input.
func FuzzEventSlotDecode(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	var sl eventSlot
	in := make(interner)
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, &sl, in, b) })
}

// TestEventSlotDecodeMutations runs what FuzzEventSlotDecode checks over
// seeded random mutations of encoded events on every test run, reusing one
// slot as Replay does, and checks that canonical encodings take the fast
// path.
func TestEventSlotDecodeMutations(t *testing.T) {
	seeds := decodeSeeds(t)
	var sl eventSlot
	in := make(interner)
	for i, b := range seeds {
		if !checkDecode(t, &sl, nil, b) {
			t.Fatalf("seed %d: a canonical encoding missed the fast path", i)
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	fast, runs := 0, 50000
	if testing.Short() {
		runs = 10000
	}
	for n := 0; n < runs; n++ {
		b := append([]byte(nil), seeds[rnd.IntN(len(seeds))]...)
		if len(b) == 0 {
			b = append(b, 0x08)
		}
		switch rnd.IntN(5) {
		case 4: // a field repeated in place: proto keeps the last
			b = repeatField(b, rnd.IntN(8))
		case 0:
			b[rnd.IntN(len(b))] ^= byte(1 + rnd.IntN(255))
		case 1:
			b = b[:rnd.IntN(len(b))]
		case 2: // a field appended: out of order, repeated, unknown or a second body
			b = protowire.AppendTag(b, protowire.Number(1+rnd.IntN(28)), protowire.Type(rnd.IntN(3)))
			b = protowire.AppendVarint(b, uint64(rnd.IntN(3)))
		case 3: // two events concatenated: proto merges them
			b = append(b, seeds[rnd.IntN(len(seeds))]...)
		}
		if checkDecode(t, &sl, in, b) {
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
