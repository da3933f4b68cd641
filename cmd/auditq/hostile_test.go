package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

// Hostile names and reasons of issue 11. The device clears the screen,
// sets the window title and forges a row of auditq events; the actor
// paints the terminal; the reasons have no space (so they were printed
// unquoted) and a line break. The hub refuses such names at its door, but
// a ledger may hold them (written before, or by another writer).
const (
	hostileDevice = "x\033]0;owned\007\033[2J\nFAKE_ROW\tkick_requested\talice"
	hostileActor  = "ops\033[31mred"
	hostileReason = "spam\033[2J"
	hostileBan    = "line\nFAKE_BAN"
	hostileUser   = "alice"
	hostileSess   = "s-evil"
)

// hostileLedger writes a ledger whose names and reasons hold terminal
// control sequences: a connect, a kick of its device, its end, a ban.
func hostileLedger(t *testing.T) (path string, start time.Time) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ledger.db")
	start = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	s, err := ledger.Open(path, &ledger.Options{Now: ledgertest.FixedClock(start, time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	st, err := s.Append(ctx,
		&eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: hostileUser, Device: hostileDevice, Session: hostileSess,
			Node: "node-2", Actor: hostileUser, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "10.0.0.1:5000"}}},
		&eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: hostileUser, Device: hostileDevice, Actor: hostileActor, Reason: hostileReason,
			Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_USER_DEVICE,
				Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}}})
	if err != nil {
		t.Fatal(err)
	}
	kick := st[1].ID
	if _, err := s.Append(ctx,
		&eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: hostileUser, Device: hostileDevice, Session: hostileSess,
			Node: "node-2", Actor: hostileActor, Reason: hostileReason, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{
				Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, CauseEventId: kick[:], Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}}},
		&eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: hostileUser, Device: hostileDevice, Session: hostileSess + "-2",
			Node: "node-2", Actor: hostileUser, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}},
		&eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: hostileUser, Actor: hostileActor, Reason: hostileBan,
			Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{}}},
	); err != nil {
		t.Fatal(err)
	}
	return path, start
}

// checkTerminalSafe fails if out holds anything a terminal acts on (a
// control character other than the line ends) or a forged row.
func checkTerminalSafe(t *testing.T, what, out string, rows int) {
	t.Helper()
	for i, r := range out {
		if (r < 0x20 && r != '\n') || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Errorf("%s: control character %U at byte %d:\n%s", what, r, i, out)
			break
		}
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != rows {
		t.Errorf("%s: %d lines; want %d (a name must not make a row):\n%s", what, len(lines), rows, out)
	}
	for _, l := range lines {
		if strings.HasPrefix(l, "FAKE_") {
			t.Errorf("%s: forged row %q", what, l)
		}
	}
}

// TestHostileNamesAreEscaped runs every human-readable output over the
// hostile ledger: tables and timelines must escape names and reasons (and
// say them, escaped), while JSON and CSV keep them exact.
func TestHostileNamesAreEscaped(t *testing.T) {
	path, start := hostileLedger(t)
	at := start.Add(1500 * time.Millisecond).Format(time.RFC3339Nano) // the session live, the kick pending
	late := start.Add(time.Minute).Format(time.RFC3339)
	escDevice, escActor, escReason := termtext.Field(hostileDevice), termtext.Field(hostileActor), termtext.Field(hostileReason)
	for _, c := range []struct {
		name string
		args []string
		rows int      // lines of the table
		want []string // in the table, escaped
	}{
		{"events", []string{"events"}, 6, []string{escDevice, escActor, escReason, termtext.Field(hostileBan)}},
		{"timeline user", []string{"timeline", "--user", hostileUser}, 6, []string{escDevice, escActor, `"spam\x1b[2J"`, `"line\nFAKE_BAN"`}},
		{"timeline session", []string{"timeline", "--session", hostileSess}, 4, []string{escDevice, escActor}},
		{"sessions", []string{"sessions", "--at", at}, 3, []string{escDevice, "kicked by " + escActor, "1 live session\n"}}, // header, row, summary
		{"bans", []string{"bans", "--at", late}, 2, []string{escActor, `line\nFAKE_BAN`}},
		{"replay", []string{"replay", "--from", start.Add(-time.Second).Format(time.RFC3339)}, 6, []string{escDevice, escActor}},
		{"stats", []string{"stats", "--top", "0"}, 0, []string{escActor}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, append([]string{"--db", path}, c.args...)...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			rows := c.rows
			if rows == 0 {
				rows = strings.Count(r.stdout, "\n")
			}
			checkTerminalSafe(t, c.name, r.stdout, rows)
			for _, w := range c.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("%s: no %s in:\n%s", c.name, w, r.stdout)
				}
			}
		})
	}

	// JSON and CSV keep every value as recorded.
	r := run(t, nil, "--db", path, "events", "--json")
	var devices, reasons []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var ev struct{ Device, Reason string }
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("events --json: %v: %q", err, line)
		}
		devices, reasons = append(devices, ev.Device), append(reasons, ev.Reason)
	}
	if devices[0] != hostileDevice || reasons[1] != hostileReason || reasons[4] != hostileBan {
		t.Errorf("events --json: devices %q, reasons %q; want the recorded values", devices, reasons)
	}
	for _, args := range [][]string{{"events", "--csv"}, {"timeline", "--user", hostileUser, "--csv"}, {"sessions", "--at", at, "--csv"}} {
		r := run(t, nil, append([]string{"--db", path}, args...)...)
		rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		found := false
		for _, row := range rows {
			for _, cell := range row {
				found = found || cell == hostileDevice || strings.Contains(cell, escDevice)
			}
		}
		if !found {
			t.Errorf("%v: the device is in no cell, exact or (in a sentence) escaped:\n%s", args, r.stdout)
		}
	}
}
