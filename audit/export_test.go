package audit

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// FuzzAppendJSONString: export's hand-written string encoder must write
// exactly what encoding/json writes, for any input, valid UTF-8 or not.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te\back`, "tab\tnl\n\r", "<script>&", "\x00\x1f\x7f", "é ü 日本", "\u2028\u2029", "bad \xff utf8 \xc3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s; want %s", s, got, want)
		}
	})
}

// TestAppendJSONMatchesDetails: the streaming details writer and Details
// describe an event alike, and the line is valid JSON.
func TestAppendJSONMatchesDetails(t *testing.T) {
	evs := []*eventpb.Event{
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED, User: "u\"1", Reason: "<why>",
			Body: &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: "s1", LastAckedSeq: 7, HeartbeatMs: 5, Supersedes: []string{"a", "b"}}}},
		{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: 2, Mode: 1, Reconnect: 3, ReconnectAfterMs: 1000}}},
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: 8, CauseEventId: []byte{1, 2, 3}}}},
		{Type: eventpb.EventType(42)},
	}
	for _, ev := range evs {
		r := &ledger.Record{Seq: 1, Time: time.Unix(0, 1).UTC(), Event: ev}
		line := AppendJSON(nil, r, time.UTC)
		var v struct {
			Type    string          `json:"type"`
			Details json.RawMessage `json:"details"`
		}
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if want := DetailsJSON(Details(ev, nil)); string(v.Details) != want {
			t.Errorf("details %s; want %s", v.Details, want)
		}
		if v.Type != TypeName(ev.GetType()) {
			t.Errorf("type %q; want %q", v.Type, TypeName(ev.GetType()))
		}
	}
}
