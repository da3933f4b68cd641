package eventpb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// reducerTypes are the types projections' replay decodes in full.
func reducerTypes() []EventType {
	return []EventType{
		EventType_EVENT_TYPE_SESSION_CONNECTED, EventType_EVENT_TYPE_SESSION_RECONNECTED,
		EventType_EVENT_TYPE_SESSION_DISCONNECTED, EventType_EVENT_TYPE_KICK_REQUESTED,
		EventType_EVENT_TYPE_USER_BANNED, EventType_EVENT_TYPE_USER_UNBANNED,
		EventType_EVENT_TYPE_TOKEN_REVOKED, EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED,
	}
}

// testDecoders are the configurations the callers use, and a few more:
// every one must agree with proto.Unmarshal on what it keeps.
func testDecoders() []struct {
	name string
	opts DecoderOptions
} {
	return []struct {
		name string
		opts DecoderOptions
	}{
		{"all", DecoderOptions{}},
		{"audit", DecoderOptions{Intern: true, AliasBytes: true}},
		{"projections", DecoderOptions{Only: reducerTypes(), Intern: true}},
		{"odd-types", DecoderOptions{Only: []EventType{EventType_EVENT_TYPE_NOTIFICATION_SENT, 99, 64, -1}, AliasBytes: true}},
	}
}

// decodeSeeds are encoded events of every type, with every field set, and
// a few that are odd but canonical.
func decodeSeeds(t testing.TB) [][]byte {
	evs := []*Event{
		{Type: EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &Event_SessionConnected{SessionConnected: &SessionConnected{
			RemoteAddr: "10.0.0.1:5", HeartbeatMs: 15000, Supersedes: []string{"a", "b"},
			Token: &ClientToken{Id: "jti-1", IssuedUnixNano: 1 << 60, ExpiresUnixNano: 1<<60 + 9}}}},
		{Type: EventType_EVENT_TYPE_SESSION_RECONNECTED, Body: &Event_SessionReconnected{SessionReconnected: &SessionReconnected{
			PreviousSession: "p", LastAckedSeq: 9, RemoteAddr: "r", HeartbeatMs: -3, Supersedes: []string{"c"},
			Token: &ClientToken{Id: "jti-2", IssuedUnixNano: 3, ExpiresUnixNano: 5}}}},
		{Type: EventType_EVENT_TYPE_NOTIFICATION_SENT, Body: &Event_NotificationSent{NotificationSent: &NotificationSent{
			Target: 2, Topic: "chat", Payload: []byte{0xff, 0}}}},
		{Type: EventType_EVENT_TYPE_KICK_REQUESTED, Body: &Event_KickRequested{KickRequested: &KickRequested{
			Target: 3, Mode: 2, Reconnect: 3, ReconnectAfterMs: 30000, RefuseConnectsMs: 30000}}},
		{Type: EventType_EVENT_TYPE_KICK_REQUESTED, Body: &Event_KickRequested{KickRequested: &KickRequested{
			Target: 2, ExceptSession: "keep-me", ExceptDevice: "phone"}}},
		{Type: EventType_EVENT_TYPE_USER_BANNED, Body: &Event_UserBanned{UserBanned: &UserBanned{UntilUnixNano: 1 << 60}}},
		{Type: EventType_EVENT_TYPE_USER_UNBANNED, Body: &Event_UserUnbanned{UserUnbanned: &UserUnbanned{}}},
		{Type: EventType_EVENT_TYPE_SESSION_DISCONNECTED, Body: &Event_SessionDisconnected{SessionDisconnected: &SessionDisconnected{
			Cause: 4, CauseEventId: []byte("0123456789abcdef"), SupersededBy: "n", Reconnect: 2, ReconnectAfterMs: 7}}},
		{Type: EventType_EVENT_TYPE_CONNECT_REJECTED, Body: &Event_ConnectRejected{ConnectRejected: &ConnectRejected{
			Code: "revoked", Count: 3, RemoteAddr: "r", CauseEventId: []byte("fedcba9876543210")}}},
		{Type: EventType_EVENT_TYPE_TOKEN_REVOKED, Body: &Event_TokenRevoked{TokenRevoked: &TokenRevoked{
			TokenId: "jti-1", IssuedBeforeUnixNano: 1 << 59, UntilUnixNano: 1 << 61}}},
		{Type: EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, Body: &Event_AdminCallRefused{AdminCallRefused: &AdminCallRefused{
			Method: "/sessionledger.hub.v1.Admin/Kick", Role: "auditor", Needs: "operator", Count: 2, RemoteAddr: "r"}}},
		{Type: EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, Body: &Event_SessionTokenRefreshed{SessionTokenRefreshed: &SessionTokenRefreshed{
			Token: &ClientToken{Id: "jti-3", IssuedUnixNano: 1, ExpiresUnixNano: 2}}}},
		{Type: EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED, Body: &Event_TokenRefreshRefused{TokenRefreshRefused: &TokenRefreshRefused{
			Code: "other_user", Token: &ClientToken{Id: "j", ExpiresUnixNano: -1}, TokenUser: "eve", TokenDevice: "pc"}}},
		{Type: 99},
		{},
		// A type with another type's body.
		{Type: EventType_EVENT_TYPE_KICK_REQUESTED, Body: &Event_UserBanned{UserBanned: &UserBanned{UntilUnixNano: 5}}},
		// Negative numbers, a long cause id, a connect that supersedes nothing.
		{Type: -7, Body: &Event_SessionDisconnected{SessionDisconnected: &SessionDisconnected{
			Cause: -1, CauseEventId: bytes.Repeat([]byte{7}, 40), ReconnectAfterMs: -5}}},
		{Type: EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &Event_SessionConnected{SessionConnected: &SessionConnected{}}},
		// Empty tokens and bodies: present, with nothing in them.
		{Type: EventType_EVENT_TYPE_SESSION_RECONNECTED, Body: &Event_SessionReconnected{SessionReconnected: &SessionReconnected{Token: &ClientToken{}}}},
		{Type: EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, Body: &Event_SessionTokenRefreshed{SessionTokenRefreshed: &SessionTokenRefreshed{}}},
		{Type: EventType_EVENT_TYPE_TOKEN_REVOKED, Body: &Event_TokenRevoked{TokenRevoked: &TokenRevoked{IssuedBeforeUnixNano: -2}}},
		// A token in a body of a type decoded only in part.
		{Type: EventType_EVENT_TYPE_CONNECT_REJECTED, Body: &Event_TokenRefreshRefused{TokenRefreshRefused: &TokenRefreshRefused{Token: &ClientToken{Id: "k"}}}},
		// Policies decided in the log: set, and present but empty; a drain.
		{Type: EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &Event_SessionConnected{SessionConnected: &SessionConnected{
			RemoteAddr: "r", Policy: &LoginPolicy{MaxPerUser: 3, OnePerDevice: true}}}},
		{Type: EventType_EVENT_TYPE_SESSION_RECONNECTED, Body: &Event_SessionReconnected{SessionReconnected: &SessionReconnected{
			PreviousSession: "p", Policy: &LoginPolicy{}}}},
		{Type: EventType_EVENT_TYPE_NODE_DRAINED, Body: &Event_NodeDrained{NodeDrained: &NodeDrained{Node: "node-b", WindowMs: 5000}}},
		// A token and a policy in one connect.
		{Type: EventType_EVENT_TYPE_SESSION_CONNECTED, Body: &Event_SessionConnected{SessionConnected: &SessionConnected{
			Token: &ClientToken{Id: "j", ExpiresUnixNano: 9}, Policy: &LoginPolicy{OnePerDevice: true}}}},
	}
	var out [][]byte
	for i, ev := range evs {
		if i < 13 {
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

// checkDecode fails t unless d.Decode(s, b) agrees with proto.Unmarshal:
// an error exactly when it fails; the same event for a type d decodes in
// full; the same type for the others, and nothing more on the fast path.
// It reports whether Decode took its fast path.
func checkDecode(t *testing.T, name string, d *Decoder, s *Slot, b []byte) (fast bool) {
	t.Helper()
	var want Event
	wantErr := proto.Unmarshal(b, &want)
	got, err := d.Decode(s, b)
	fast = err == nil && got == &s.ev
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%s: Decode(%x): error %v; proto.Unmarshal: %v", name, b, err, wantErr)
	}
	if err != nil {
		return false
	}
	switch {
	case d.keeps(want.GetType()):
		if !proto.Equal(got, &want) {
			t.Fatalf("%s: Decode(%x):\ngot  %v\nwant %v", name, b, got, &want)
		}
	case fast:
		if !proto.Equal(got, &Event{Type: want.GetType()}) {
			t.Fatalf("%s: Decode(%x) of a type not kept = %v; want only type %v", name, b, got, want.GetType())
		}
	default:
		if got.GetType() != want.GetType() {
			t.Fatalf("%s: Decode(%x): type %v; want %v", name, b, got.GetType(), want.GetType())
		}
	}
	return fast
}

// decoderSet is one Decoder and one reused Slot per test configuration.
type decoderSet []struct {
	name string
	d    *Decoder
	s    *Slot
}

func newDecoderSet() decoderSet {
	var set decoderSet
	for _, c := range testDecoders() {
		set = append(set, struct {
			name string
			d    *Decoder
			s    *Slot
		}{c.name, NewDecoder(c.opts), new(Slot)})
	}
	return set
}

// check runs checkDecode for every configuration and reports whether all
// of them took the fast path.
func (set decoderSet) check(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	fast = true
	for _, c := range set {
		if !checkDecode(t, c.name, c.d, c.s, b) {
			fast = false
		}
	}
	return fast
}

// FuzzDecode checks every decoder configuration against proto.Unmarshal on
// arbitrary input, one Slot per configuration reused across inputs.
func FuzzDecode(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	set := newDecoderSet()
	f.Fuzz(func(t *testing.T, b []byte) { set.check(t, b) })
}

// TestDecodeCanonicalIsFast: every canonical seed takes the fast path in
// every configuration (else the fallback would hide a decoder that reads
// nothing).
func TestDecodeCanonicalIsFast(t *testing.T) {
	set := newDecoderSet()
	for i, b := range decodeSeeds(t) {
		if !set.check(t, b) {
			t.Errorf("seed %d (%x): a canonical encoding missed the fast path", i, b)
		}
	}
}

// TestDecodeMutations runs what FuzzDecode checks over every seed with each
// byte changed, dropped and duplicated, and over seeded random mutations
// (fields repeated, appended, cut, events concatenated), reusing one slot
// per configuration as the callers do.
func TestDecodeMutations(t *testing.T) {
	seeds := decodeSeeds(t)
	set := newDecoderSet()
	for _, seed := range seeds {
		for i := range seed {
			for _, d := range []byte{1, 0x7f, 0x80, 0xff} {
				m := bytes.Clone(seed)
				m[i] += d
				set.check(t, m)
			}
			set.check(t, append(bytes.Clone(seed[:i]), seed[i+1:]...))
			set.check(t, append(bytes.Clone(seed[:i+1]), seed[i:]...))
		}
	}
	rnd := rand.New(rand.NewPCG(3, 4))
	fast, runs := 0, 50000
	if testing.Short() {
		runs = 5000
	}
	for n := 0; n < runs; n++ {
		b := bytes.Clone(seeds[rnd.IntN(len(seeds))])
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
			b = protowire.AppendTag(b, protowire.Number(1+rnd.IntN(32)), protowire.Type(rnd.IntN(3)))
			b = protowire.AppendVarint(b, uint64(rnd.IntN(3)))
		case 3: // two events concatenated: proto merges them
			b = append(b, seeds[rnd.IntN(len(seeds))]...)
		}
		if set.check(t, b) {
			fast++
		}
	}
	t.Logf("%d of %d random mutations took the fast path", fast, runs)
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
	f := bytes.Clone(b[start:ends[i]])
	f[len(f)-1] ^= 1
	out := bytes.Clone(b[:ends[i]])
	out = append(out, f...)
	return append(out, b[ends[i]:]...)
}

// TestDecoderKnowsEverySchemaField: every field of Event and of every
// message under it is one the decoder reads, with the number, wire type and
// cardinality of the generated descriptor, and every field the decoder
// knows by name is in the schema. A field added to events.proto fails here
// until decode.go reads it (until then the fallback decodes such events, in
// full but slowly).
func TestDecoderKnowsEverySchemaField(t *testing.T) {
	d := NewDecoder(DecoderOptions{})
	specs := fieldSpecs()
	seen := make(map[field]bool)
	var visit func(md protoreflect.MessageDescriptor, m msg)
	visit = func(md protoreflect.MessageDescriptor, m msg) {
		if m.descriptor().FullName() != md.FullName() {
			t.Fatalf("message %s is read as %s", md.FullName(), m.descriptor().FullName())
		}
		fields := md.Fields()
		for i := 0; i < fields.Len(); i++ {
			fd := fields.Get(i)
			wt := protowire.VarintType
			if fd.Kind() == protoreflect.StringKind || fd.Kind() == protoreflect.BytesKind || fd.Kind() == protoreflect.MessageKind {
				wt = protowire.BytesType
			}
			tag := int(protowire.EncodeTag(fd.Number(), wt))
			if tag >= len(d.msgs[m].byTag) || d.msgs[m].byTag[tag].id == noField {
				t.Errorf("field %s (%d, %v) is not read by the decoder: add it to decode.go", fd.FullName(), fd.Number(), fd.Kind())
				continue
			}
			e := d.msgs[m].byTag[tag]
			sp := specs[e.id]
			if sp.name != fd.Name() || sp.kind != fd.Kind() || e.list != fd.IsList() || e.wt != wt {
				t.Errorf("field %s (%d): read as %s %v list=%v wire type %v; want %s %v list=%v wire type %v", fd.FullName(), fd.Number(),
					sp.name, sp.kind, e.list, e.wt, fd.Name(), fd.Kind(), fd.IsList(), wt)
			}
			seen[e.id] = true
			if fd.Kind() == protoreflect.MessageKind {
				visit(fd.Message(), e.sub)
			}
		}
	}
	visit((*Event)(nil).ProtoReflect().Descriptor(), msgEvent)
	for id := field(1); id < numFields; id++ {
		if !seen[id] {
			t.Errorf("decoder field %d (%s.%s) is not in the schema", id, specs[id].msg.descriptor().Name(), specs[id].name)
		}
	}
	if d.typeNum == 0 {
		t.Error("Event.type not found")
	}
}

// TestDecodeCopiesWithoutAlias: without AliasBytes the decoded event shares
// no memory with the input (projections applies it after the read
// transaction that owned the bytes ended); with it, byte fields alias.
func TestDecodeCopiesWithoutAlias(t *testing.T) {
	for _, c := range testDecoders() {
		d := NewDecoder(c.opts)
		var s Slot
		for i, seed := range decodeSeeds(t) {
			var want Event
			if err := proto.Unmarshal(seed, &want); err != nil {
				t.Fatal(err)
			}
			b := bytes.Clone(seed)
			got, err := d.Decode(&s, b)
			if err != nil {
				t.Fatal(err)
			}
			for j := range b {
				b[j] = 0xee
			}
			changed := !proto.Equal(got, &want)
			if c.opts.AliasBytes {
				payload := len(want.GetNotificationSent().GetPayload()) + len(want.GetSessionDisconnected().GetCauseEventId()) +
					len(want.GetConnectRejected().GetCauseEventId())
				if d.keeps(want.GetType()) && payload > 0 && !changed {
					t.Errorf("%s: seed %d: byte fields did not alias the input", c.name, i)
				}
				continue
			}
			if changed && d.keeps(want.GetType()) {
				t.Errorf("%s: seed %d: event changed with its input: got %v; want %v", c.name, i, got, &want)
			}
		}
	}
}

// TestDecodeInterns: with Intern, the shared fields of different events are
// one string; the interner stays within its bounds; users and sessions are
// never kept in it.
func TestDecodeInterns(t *testing.T) {
	d := NewDecoder(DecoderOptions{Intern: true})
	enc := func(ev *Event) []byte {
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var s1, s2 Slot
	mk := func(i int) *Event {
		return &Event{Type: 3, User: fmt.Sprint("u", i), Session: fmt.Sprint("s", i), Device: "ios", Node: "n", Actor: "svc", Reason: "r",
			Body: &Event_NotificationSent{NotificationSent: &NotificationSent{Topic: "chat"}}}
	}
	a, err := d.Decode(&s1, enc(mk(1)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Decode(&s2, enc(mk(2)))
	if err != nil {
		t.Fatal(err)
	}
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(a.Device, b.Device) || !same(a.Node, b.Node) || !same(a.Actor, b.Actor) || !same(a.Reason, b.Reason) ||
		!same(a.GetNotificationSent().Topic, b.GetNotificationSent().Topic) {
		t.Error("device, node, actor, reason or topic of two events are not one string")
	}
	if _, ok := d.strs[a.User]; ok {
		t.Errorf("user %q interned; want users never kept", a.User)
	}
	var s Slot
	for i := range internMax + 100 {
		ev := mk(i)
		ev.Device = fmt.Sprint("device-", i)
		if i%2 == 0 {
			ev.Reason = strings.Repeat("x", internLen+1) + fmt.Sprint(i)
		}
		if _, err := d.Decode(&s, enc(ev)); err != nil {
			t.Fatal(err)
		}
	}
	if len(d.strs) > internMax {
		t.Errorf("interner holds %d strings; want at most %d", len(d.strs), internMax)
	}
	for k := range d.strs {
		if len(k) > internLen {
			t.Errorf("interner holds a %d-byte string; want at most %d", len(k), internLen)
		}
	}
}

// benchEvents is a mix of canonical events shaped like a busy hub's log
// (projections/benchgen_test.go): notifications, connects, disconnects,
// rejected connects, some kicks and bans.
func benchEvents(b *testing.B) [][]byte {
	rnd := rand.New(rand.NewPCG(1, 1))
	var out [][]byte
	for i := range 4096 {
		user, dev, sess := fmt.Sprint("user-", rnd.IntN(50000)), []string{"ios", "android", "web"}[rnd.IntN(3)], fmt.Sprintf("01JD%022d", i)
		addr := fmt.Sprintf("203.0.%d.%d:%d", rnd.IntN(256), rnd.IntN(256), 1024+rnd.IntN(60000))
		var ev *Event
		switch x := rnd.IntN(100); {
		case x < 44:
			ev = &Event{Type: EventType_EVENT_TYPE_NOTIFICATION_SENT, User: user, Session: sess, Actor: "svc-chat", Node: "hubd-1",
				Body: &Event_NotificationSent{NotificationSent: &NotificationSent{Target: 1, Topic: "chat", Payload: bytes.Repeat([]byte("x"), 40+rnd.IntN(80))}}}
		case x < 70:
			ev = &Event{Type: EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: dev, Session: sess, Node: "hubd-1", Actor: user, Reason: "client hello v2.14.1",
				Body: &Event_SessionConnected{SessionConnected: &SessionConnected{RemoteAddr: addr, HeartbeatMs: 15000}}}
		case x < 94:
			ev = &Event{Type: EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: user, Device: dev, Session: sess, Node: "hubd-1", Actor: user, Reason: "stream closed: CLIENT_CLOSED",
				Body: &Event_SessionDisconnected{SessionDisconnected: &SessionDisconnected{Cause: 1, Reconnect: 1}}}
		case x < 97:
			ev = &Event{Type: EventType_EVENT_TYPE_CONNECT_REJECTED, User: user, Device: dev, Node: "hubd-1", Actor: "system", Reason: "rate limited",
				Body: &Event_ConnectRejected{ConnectRejected: &ConnectRejected{Code: "rate_limited", Count: 3, RemoteAddr: addr}}}
		case x < 99:
			ev = &Event{Type: EventType_EVENT_TYPE_KICK_REQUESTED, User: user, Device: dev, Session: sess, Node: "hubd-1", Actor: "ops-alice", Reason: "abuse",
				Body: &Event_KickRequested{KickRequested: &KickRequested{Target: 1, Mode: 1, Reconnect: 3, ReconnectAfterMs: 60000}}}
		default:
			ev = &Event{Type: EventType_EVENT_TYPE_USER_BANNED, User: user, Actor: "ops-bob", Reason: "spam",
				Body: &Event_UserBanned{UserBanned: &UserBanned{UntilUnixNano: 1 << 62}}}
		}
		enc, err := proto.Marshal(ev)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, enc)
	}
	return out
}

// BenchmarkDecode decodes the benchEvents mix with the callers'
// configurations; proto.Unmarshal into a fresh Event is the baseline.
func BenchmarkDecode(b *testing.B) {
	evs := benchEvents(b)
	for _, c := range testDecoders()[:3] {
		b.Run("decoder="+c.name, func(b *testing.B) {
			d := NewDecoder(c.opts)
			var s Slot
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := d.Decode(&s, evs[i%len(evs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
	b.Run("decoder=proto.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := proto.Unmarshal(evs[i%len(evs)], new(Event)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
