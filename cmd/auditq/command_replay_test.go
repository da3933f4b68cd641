package main

import (
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
)

// TestReplayNotAnEvent: a record of another topic than the session events
// is a step of the replay named not_an_event in every format.
func TestReplayNotAnEvent(t *testing.T) {
	path := audittest.Copy(t, fixture)
	st, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.NewPublisher(st).Publish("sessionledger.test.other", message.NewMessage("m-1", []byte("not an event"))); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"", "--csv", "--json"} {
		args := []string{"--db", path, "replay", "--from", "2026-03-01T11:20:00Z"}
		if format != "" {
			args = append(args, format)
		}
		r := run(t, nil, args...)
		if r.code != 0 {
			t.Fatalf("replay %s: exit %d\n%s", format, r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		last := lines[len(lines)-1]
		if !strings.Contains(last, "not_an_event") || strings.Contains(r.stdout, "unspecified") {
			t.Errorf("replay %s: got\n%s\nwant the last step named not_an_event", format, r.stdout)
		}
	}
}
