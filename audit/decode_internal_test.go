package audit

import (
	"bytes"
	"encoding/csv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// decodeSeeds are encoded events of every body type, with repeated fields.
func decodeSeeds(t testing.TB) [][]byte {
	evs := []*eventpb.Event{
		{},
		{Type: 1, User: "u", Device: "d", Session: "s", Node: "n", Actor: "a", Reason: "r",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "1.2.3.4:5", HeartbeatMs: 10, Supersedes: []string{"x", "y"}}}},
		{Type: 2, Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: "p", LastAckedSeq: 9, RemoteAddr: "r", HeartbeatMs: -1, Supersedes: []string{"z"}}}},
		{Type: 3, Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: 2, Topic: "t", Payload: []byte{0, 0xff}}}},
		{Type: 4, Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: 1, Mode: 2, Reconnect: 3, ReconnectAfterMs: 500}}},
		{Type: 5, Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: 1 << 60}}},
		{Type: 6, Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}},
		{Type: 7, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: 2, CauseEventId: make([]byte, 16), SupersededBy: "s2", Reconnect: 1, ReconnectAfterMs: 3}}},
		{Type: 8, Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "c", Count: 4, RemoteAddr: "r"}}},
		// Fields of issue 18: a session's token, a kick's refusal window,
		// the event behind a refusal.
		{Type: 1, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "a", Supersedes: []string{"x"},
			Token: &eventpb.ClientToken{Id: "jti", IssuedUnixNano: 1 << 61, ExpiresUnixNano: 1<<61 + 5}}}},
		{Type: 2, Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: "p",
			Token: &eventpb.ClientToken{Id: "j2", ExpiresUnixNano: 7}}}},
		{Type: 4, Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: 2, Reconnect: 2, RefuseConnectsMs: 600000}}},
		{Type: 8, Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "revoked", Count: 1, CauseEventId: make([]byte, 16)}}},
	}
	var out [][]byte
	for _, ev := range evs {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// checkDecode fails t unless the slot decodes b as proto.Unmarshal does.
func checkDecode(t *testing.T, sl *eventSlot, b []byte) {
	t.Helper()
	want := new(eventpb.Event)
	wantErr := proto.Unmarshal(b, want)
	got, err := sl.decode(b)
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("decode(%x): error %v; want %v", b, err, wantErr)
	}
	if err == nil && !proto.Equal(got, want) {
		t.Fatalf("decode(%x) = %v; want %v", b, got, want)
	}
}

// FuzzEventSlotDecode: the reused-message decoder gives what proto.Unmarshal
// gives, for any input, one slot reused across inputs.
func FuzzEventSlotDecode(f *testing.F) {
	for _, b := range decodeSeeds(f) {
		f.Add(b)
	}
	sl := newEventSlot()
	f.Fuzz(func(t *testing.T, b []byte) { checkDecode(t, sl, b) })
}

// TestEventSlotDecodeMutations runs every seed with each byte changed,
// dropped and duplicated, through one slot: the fuzz target's ground,
// deterministically in every go test.
func TestEventSlotDecodeMutations(t *testing.T) {
	sl := newEventSlot()
	fast := 0
	for _, seed := range decodeSeeds(t) {
		checkDecode(t, sl, seed)
		if sl.decodeFast(seed) {
			fast++
		}
		for i := range seed {
			for _, d := range []byte{1, 0x7f, 0x80, 0xff} {
				m := bytes.Clone(seed)
				m[i] += d
				checkDecode(t, sl, m)
			}
			checkDecode(t, sl, append(bytes.Clone(seed[:i]), seed[i+1:]...))
			checkDecode(t, sl, append(bytes.Clone(seed[:i+1]), seed[i:]...))
		}
	}
	if fast != len(decodeSeeds(t)) {
		t.Errorf("%d of %d canonical seeds took the fast path", fast, len(decodeSeeds(t)))
	}
}

// FuzzAppendCSVField: export's CSV row writer writes what encoding/csv
// writes.
func FuzzAppendCSVField(f *testing.F) {
	for _, s := range []string{"", "plain", "a,b", `q"q`, "nl\n", "cr\r", " lead", "\tlead", `\.`, "\u00a0x", "\u2028", "\xff", "trail "} {
		f.Add(s, "x")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		var want bytes.Buffer
		c := csv.NewWriter(&want)
		_ = c.Write([]string{a, b})
		c.Flush()
		if got := appendCSVRow(nil, []string{a, b}); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("appendCSVRow(%q, %q) = %q; want %q", a, b, got, want.Bytes())
		}
		if got := appendCSVField(nil, []byte(a)); !bytes.Equal(got, appendCSVField(nil, a)) {
			t.Errorf("appendCSVField([]byte(%q)) = %q; want %q", a, got, appendCSVField(nil, a))
		}
	})
}
