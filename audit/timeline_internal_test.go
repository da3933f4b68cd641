package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestDisconnectReasonTold: a disconnect's sentence ends with the reason
// the hub recorded, whatever the cause, and says nothing of an empty one.
func TestDisconnectReasonTold(t *testing.T) {
	for _, c := range []struct {
		cause  eventpb.DisconnectCause
		reason string
		want   string
	}{
		{eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT, "no heartbeat for 30s", `ended: idle timeout (no heartbeat): "no heartbeat for 30s"; reconnect allowed`},
		{eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER, "4096 notifications queued", `slow consumer (its notifications piled up): "4096 notifications queued"`},
		{eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN, "drain", `ended: server shutdown: "drain"; reconnect allowed`},
		{eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, "kicked by the api", `ended: kicked: "kicked by the api"; reconnect allowed`},
		{eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, "", `ended: closed by the client; reconnect allowed`},
	} {
		ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: "u", Session: "s-1", Reason: c.reason,
			Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: c.cause, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}}}
		tl := &teller{loc: time.UTC}
		got, err := tl.describe(context.Background(), &ledger.Record{Seq: 1, Event: ev})
		if err != nil || !strings.Contains(got, c.want) {
			t.Errorf("%s: got %q, %v; want it to say %q", CauseName(c.cause), got, err, c.want)
		}
	}
}
