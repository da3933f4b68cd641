package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// rejected appends a connect_rejected of user zed to the hub's ledger, as
// hubd would record one, with reason as its reason.
func rejected(t *testing.T, h *audittest.Hub, reason string) {
	t.Helper()
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: "zed", Device: "pc", Node: audittest.HubNode, Actor: "system", Reason: reason,
		Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "banned", Count: 1}}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.Store.Append(ctx, ev); err != nil {
		t.Fatal(err)
	}
}

// sleepUntil sleeps until just after t.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t) + 50*time.Millisecond) }

// TestFollowFutureWindow follows a window that begins and ends in the
// future through --addr: the records before it are not printed, the one in
// it is, and the command ends by itself once a record at or after --until
// is recorded.
func TestFollowFutureWindow(t *testing.T) {
	h := audittest.StartHub(t, fixture)
	since := time.Now().Add(800 * time.Millisecond)
	until := since.Add(800 * time.Millisecond)
	done := make(chan result, 1)
	go func() {
		done <- run(t, nil, "--addr", h.Addr, "--token", h.Token, "--json", "events", "--follow", "--user", "zed",
			"--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano))
	}()
	time.Sleep(200 * time.Millisecond) // most likely following by now; the outcome is the same if not
	rejected(t, h, "before the window")
	sleepUntil(since)
	rejected(t, h, "in the window")
	sleepUntil(until)
	select {
	case r := <-done:
		t.Fatalf("follow ended before --until passed: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	case <-time.After(100 * time.Millisecond):
	}
	rejected(t, h, "after the window")
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("exit %d; want 0\n%s", r.code, r.stderr)
		}
		if got, want := strings.Count(r.stdout, "\n"), 1; got != want || !strings.Contains(r.stdout, "in the window") {
			t.Errorf("printed %d lines:\n%s\nwant %d, the record in the window", got, r.stdout, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after a record past --until")
	}
}

// TestFollowTableAligned: hubd records times to the nanosecond, so the
// times of followed rows differ in length; the columns after TIME must
// still line up, in UTC and in a zone with an offset.
func TestFollowTableAligned(t *testing.T) {
	h := audittest.StartHub(t, fixture)
	for _, tz := range []string{"UTC", "Asia/Kolkata"} {
		t.Run(tz, func(t *testing.T) {
			since := time.Now()
			until := since.Add(time.Second)
			done := make(chan result, 1)
			go func() {
				done <- run(t, nil, "--addr", h.Addr, "--token", h.Token, "--tz", tz, "events", "--follow", "--user", "zed",
					"--since", since.Format(time.RFC3339Nano), "--until", until.Format(time.RFC3339Nano))
			}()
			for range 5 {
				rejected(t, h, "in the window")
				time.Sleep(7 * time.Millisecond)
			}
			sleepUntil(until)
			rejected(t, h, "after the window")
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("follow did not end after a record past --until")
			}
			lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
			if r.code != 0 || len(lines) < 6 {
				t.Fatalf("exit %d, %d lines; want 0 and a header and 5 rows\n%s%s", r.code, len(lines), r.stdout, r.stderr)
			}
			typeAt, userAt := strings.Index(lines[0], "TYPE"), strings.Index(lines[0], "USER")
			for _, l := range lines[1:] {
				if strings.Index(l, "connect_rejected") != typeAt || strings.Index(l, " zed ")+1 != userAt {
					t.Errorf("row not aligned with the header:\n%s\n%s", lines[0], l)
				}
			}
		})
	}
}

// TestEventsByMessage: --message finds the one record with that message
// UUID (the id a cluster's OUTCOME_UNKNOWN answer names), from a file and
// through a live hub, and none for an id the log does not hold; export
// finds it too.
func TestEventsByMessage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := ledger.NewPublisher(s)
	for i, id := range []string{"01KMSG0000000000000000000A", "01KMSG0000000000000000000B", "01KMSG0000000000000000000C"} {
		b, err := proto.Marshal(ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, "u", fmt.Sprintf("s%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ledger.EventsTopic, message.NewMessage(id, b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	h := audittest.StartHub(t, file)
	for name, src := range map[string][]string{"file": {"--db", file}, "hub": {"--addr", h.Addr, "--token", h.Token}} {
		t.Run(name, func(t *testing.T) {
			r := run(t, nil, append(src, "events", "--message", "01KMSG0000000000000000000B", "--json")...)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if r.code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], `{"seq":2,`) {
				t.Fatalf("events --message: exit %d, %q (stderr %q); want the record at seq 2 alone", r.code, r.stdout, r.stderr)
			}
			r = run(t, nil, append(src, "events", "--message", "01NOTINTHELOG0000000000000", "--json")...)
			if r.code != 0 || strings.TrimSpace(r.stdout) != "" {
				t.Fatalf("events --message of an id not in the log: exit %d, %q (stderr %q); want nothing", r.code, r.stdout, r.stderr)
			}
			// Export shares the filter flags, and reads the log its own
			// way without --user or --session.
			r = run(t, nil, append(src, "export", "--message", "01KMSG0000000000000000000B")...)
			lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
			if r.code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], `{"seq":2,`) {
				t.Fatalf("export --message: exit %d, %q (stderr %q); want the record at seq 2 alone", r.code, r.stdout, r.stderr)
			}
		})
	}
}
