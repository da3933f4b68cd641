package client_test

import (
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/hub/client"
)

// TestDisconnectErrorIsOneSafeLine: the reason and the refusal code are
// the server's text, printed by applications and hubctl: Error quotes
// them unless they are one plain word, escaping what a terminal would act
// on, while Reason stays as sent.
func TestDisconnectErrorIsOneSafeLine(t *testing.T) {
	const reason = "x\033]0;owned\007\033[2J\nFAKE_ROW"
	d := &client.Disconnect{Cause: client.CauseKicked, Reason: reason, Reconnect: client.ReconnectNotAllowed}
	if got, want := d.Error(), `kicked: "x\x1b]0;owned\a\x1b[2J\nFAKE_ROW" (reconnect not_allowed)`; got != want {
		t.Errorf("Error() = %s; want %s", got, want)
	}
	if d.Reason != reason {
		t.Errorf("Reason = %q; want it as sent", d.Reason)
	}
	d = &client.Disconnect{Cause: client.CauseRejected, RejectCode: "banned\n", Reason: "spam"}
	if got := d.Error(); strings.ContainsAny(got, "\n") || got != `rejected ("banned\n"): spam` {
		t.Errorf("Error() = %q; want the code escaped", got)
	}
}
