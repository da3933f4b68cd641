package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/syncbuf"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// hubd is a real hub on a real ledger in a data directory laid out as
// hubd's, served over gRPC on 127.0.0.1.
type hubd struct {
	t     *testing.T
	data  string
	addr  string
	store *ledger.Store
}

func startHub(t *testing.T) *hubd {
	t.Helper()
	return startHubWith(t, nil)
}

// startHubWith is startHub with change applied to the hub's configuration
// and, with tlsCert, serving over TLS with that certificate.
func startHubWith(t *testing.T, change func(*hub.Config), tlsCert ...tls.Certificate) *hubd {
	t.Helper()
	return startHubOn(t, nil, change, tlsCert...)
}

// startHubOn is startHubWith on a ledger that seed, if not nil, writes
// first (a history the hub did not record itself).
func startHubOn(t *testing.T, seed func(*ledger.Store), change func(*hub.Config), tlsCert ...tls.Certificate) *hubd {
	t.Helper()
	return startHubSeeded(t, seed, change, func(dc *daemon.Config) {
		if len(tlsCert) > 0 {
			dc.Creds = credentials.NewTLS(&tls.Config{Certificates: tlsCert, MinVersion: tls.VersionTLS12})
		}
	})
}

// daemonWatch makes the daemon look for changed credential files every d.
func daemonWatch(d time.Duration) func(*daemon.Config) {
	return func(dc *daemon.Config) { dc.WatchInterval = d }
}

// startHubDaemon is startHubWith with dchange applied to the daemon's
// configuration.
func startHubDaemon(t *testing.T, change func(*hub.Config), dchange func(*daemon.Config)) *hubd {
	t.Helper()
	return startHubSeeded(t, nil, change, dchange)
}

// startHubSeeded starts the hub on a ledger that seed, if not nil, writes
// first, with change applied to the hub's configuration and dchange to the
// daemon's.
func startHubSeeded(t *testing.T, seed func(*ledger.Store), change func(*hub.Config), dchange func(*daemon.Config)) *hubd {
	t.Helper()
	data := t.TempDir()
	tokens, _, err := hubapi.LoadOrCreateAdminTokens(data)
	if err != nil {
		t.Fatal(err)
	}
	for i := range tokens {
		tokens[i].Name = "ops-carol"
	}
	cfg := hub.Config{Admins: tokens, Policy: projections.Policy{OnePerDevice: true}, ShutdownJitter: 50 * time.Millisecond, ShutdownReconnect: 50 * time.Millisecond}
	if change != nil {
		change(&cfg)
	}
	dc := daemon.Config{Data: data, Listen: "127.0.0.1:0", Hub: cfg, Logger: slog.New(slog.DiscardHandler)}
	if dchange != nil {
		dchange(&dc)
	}
	d, err := daemon.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	if seed != nil {
		store, err := ledger.Open(filepath.Join(data, "ledger.db"), nil)
		if err != nil {
			t.Fatal(err)
		}
		seed(store)
		if err := store.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return &hubd{t: t, data: data, addr: d.Addr(), store: d.Store()}
}

// ctl runs hubctl against h and returns exit code, stdout, stderr.
func (h *hubd) ctl(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(append(args, "--addr", h.addr, "--data", h.data), &out, &errb)
	return code, out.String(), errb.String()
}

// hold opens a raw client session and returns its id and stream.
func (h *hubd) hold(user, device string) (string, hubpb.Hub_ConnectClient) {
	h.t.Helper()
	conn, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(func() { cancel(); conn.Close() })
	st, err := hubpb.NewHubClient(conn).Connect(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: device}}}); err != nil {
		h.t.Fatal(err)
	}
	f, err := st.Recv()
	if err != nil || f.GetWelcome() == nil {
		h.t.Fatalf("connect: %v %v", f, err)
	}
	return f.GetWelcome().GetSessionId(), st
}

// last returns the newest event of type typ in the ledger.
func (h *hubd) last(typ eventpb.EventType) *eventpb.Event {
	h.t.Helper()
	var found *eventpb.Event
	_ = h.store.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		if r.Event.GetType() == typ {
			found = r.Event
		}
		return nil
	})
	if found == nil {
		h.t.Fatalf("no %v event in the ledger", typ)
	}
	return found
}

func TestKickBanUnbanNotifySessions(t *testing.T) {
	h := startHub(t)
	id, st := h.hold("alice", "phone")

	code, out, errs := h.ctl("sessions")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "alice") || !strings.Contains(out, "1 live session\n") {
		t.Fatalf("sessions: %d %q %q", code, out, errs)
	}
	code, out, _ = h.ctl("sessions", "--json")
	var row map[string]any
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &row) != nil || row["session_id"] != id {
		t.Fatalf("sessions --json: %d %q", code, out)
	}

	code, out, errs = h.ctl("notify", "--user", "alice", "--topic", "chat", "--payload", `{"text":"hi"}`)
	if code != 0 || !strings.Contains(out, "notified: event ") || !strings.Contains(out, "1 live session(s) addressed") {
		t.Fatalf("notify: %d %q %q", code, out, errs)
	}
	for {
		f, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if n := f.GetNotification(); n != nil {
			if n.GetTopic() != "chat" || string(n.GetPayload()) != `{"text":"hi"}` {
				t.Fatalf("notification %v", n)
			}
			break
		}
	}

	code, out, errs = h.ctl("kick", "--user", "alice", "--reason", "password changed", "--reconnect-after", "5m", "--json")
	if code != 0 {
		t.Fatalf("kick: %d %q %q", code, out, errs)
	}
	var reply struct {
		EventID  string `json:"event_id"`
		Sessions int    `json:"sessions"`
	}
	if err := json.Unmarshal([]byte(out), &reply); err != nil || reply.EventID == "" || reply.Sessions != 1 {
		t.Fatalf("kick --json: %q (%v)", out, err)
	}
	k := h.last(eventpb.EventType_EVENT_TYPE_KICK_REQUESTED)
	if k.GetActor() != "ops-carol" || k.GetReason() != "password changed" || k.GetUser() != "alice" ||
		k.GetKickRequested().GetReconnectAfterMs() != (5*time.Minute).Milliseconds() {
		t.Fatalf("kick event %v", k)
	}

	code, out, errs = h.ctl("ban", "--user", "mallory", "--for", "1h", "--reason", "spam")
	if code != 0 || !strings.Contains(out, "banned: event ") {
		t.Fatalf("ban: %d %q %q", code, out, errs)
	}
	b := h.last(eventpb.EventType_EVENT_TYPE_USER_BANNED)
	if b.GetUser() != "mallory" || b.GetActor() != "ops-carol" || b.GetReason() != "spam" {
		t.Fatalf("ban event %v", b)
	}
	code, out, errs = h.ctl("unban", "--user", "mallory", "--reason", "appeal")
	if code != 0 || !strings.Contains(out, "unbanned: event ") {
		t.Fatalf("unban: %d %q %q", code, out, errs)
	}
	if u := h.last(eventpb.EventType_EVENT_TYPE_USER_UNBANNED); u.GetUser() != "mallory" || u.GetReason() != "appeal" {
		t.Fatalf("unban event %v", u)
	}
}

// TestBadUsage: each mistake gets one clear line, exit 2, and nothing is
// recorded.
func TestBadUsage(t *testing.T) {
	h := startHub(t)
	head := h.store.Head().Seq
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"kick", "--reason", "x"}, "give --session or --user"},
		{[]string{"kick", "--user", "u"}, "--reason is required"},
		{[]string{"kick", "--session", "s", "--user", "u", "--reason", "x"}, "--session cannot go with --user"},
		{[]string{"kick", "--user", "u", "--reason", "x", "--no-reconnect", "--reconnect-after", "1m"}, "exclude each other"},
		{[]string{"ban", "--user", "u", "--reason", "x", "--until", "tomorrow"}, "malformed time \"tomorrow\""},
		{[]string{"ban", "--user", "u", "--reason", "x", "--until", "2001-01-01T00:00:00Z"}, "in the past"},
		{[]string{"ban", "--reason", "x"}, "--user is required"},
		{[]string{"ban", "--user", "u", "--reason", "x", "--for", "999us"}, "--for must be at least 1ms"},
		{[]string{"kick", "--user", "u", "--reason", "x", "--reconnect-after", "500us"}, "--reconnect-after must be at least 1ms"},
		{[]string{"kick", "--user", "u", "--reason", "x", "--reconnect-after", "9000h"}, "--reconnect-after 9000h0m0s is longer than the maximum"},
		{[]string{"ban", "--user", "u", "--reason", "x", "--for", "2562047h"}, "--for 2562047h0m0s is longer than the maximum"},
		{[]string{"ban", "--user", "u", "--reason", "x", "--until", "2300-01-01T00:00:00Z"}, "--until 2300-01-01T00:00:00Z is more than"},
		{[]string{"notify", "--user", "u", "--all", "--topic", "t", "--payload", "{}"}, "exactly one of"},
		{[]string{"notify", "--user", "u", "--topic", "t", "--payload", "{nope"}, "not valid JSON"},
		{[]string{"kick", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"bogus"}, `hubctl: unknown command "bogus"`},
		{[]string{"sesions"}, `unknown command "sesions" (did you mean session or sessions?)`},
		{[]string{"sessions", "extra"}, `hubctl: sessions: stray argument "extra"`},
		{[]string{"connect", "--user", "u", "extra"}, `hubctl: connect: stray argument "extra"`},
		{[]string{"kick", "--user", "u", "--reason", "x", "extra"}, `hubctl: kick: stray argument "extra"`},
		{[]string{"token", "--user", "u"}, "--secret-file is required"},
	} {
		code, out, errs := h.ctl(c.args...)
		if code != exitUsage || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") != 0 || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", c.args, code, out, errs, c.want)
		}
	}
	if h.store.Head().Seq != head {
		t.Fatalf("bad usage recorded %d events", h.store.Head().Seq-head)
	}
}

func TestAuthErrors(t *testing.T) {
	h := startHub(t)
	var out, errb bytes.Buffer
	code := run([]string{"sessions", "--addr", h.addr, "--token", "not-the-token-at-all"}, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "Unauthenticated") {
		t.Fatalf("wrong token: %d %q", code, errb.String())
	}
	errb.Reset()
	code = run([]string{"sessions", "--addr", h.addr, "--data", filepath.Join(h.data, "nope")}, &out, &errb)
	if code != exitFailure || !strings.Contains(errb.String(), "admin.token does not exist") {
		t.Fatalf("missing token file: %d %q", code, errb.String())
	}
	errb.Reset()
	code = run([]string{"kick", "--session", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--reason", "x", "--addr", h.addr, "--data", h.data}, &out, &errb)
	// A kick of a session that is not live is still an operator's act: it
	// is recorded, and hubctl says it reached nobody.
	if code != 0 || !strings.Contains(out.String(), "0 live session(s) addressed (none was live; the kick is recorded)") {
		t.Fatalf("kick of an unknown session: %d %q %q", code, out.String(), errb.String())
	}
}

func TestToken(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "jwt.key")
	if err := os.WriteFile(secret, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"token", "--user", "alice", "--device", "phone", "--secret-file", secret}, &out, &errb); code != 0 {
		t.Fatalf("token: %d %s", code, errb.String())
	}
	var claims hubapi.Claims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &claims, func(*jwt.Token) (any, error) {
		return []byte("0123456789abcdef0123456789abcdef"), nil
	}, jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || claims.Subject != "alice" || claims.Device != "phone" {
		t.Fatalf("token %q: %v, claims %+v", out.String(), err, claims)
	}
	// A secret others can read is refused, as hubd refuses it.
	if err := os.Chmod(secret, 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"token", "--user", "alice", "--secret-file", secret}, &out, &errb); code != exitFailure || out.Len() != 0 ||
		!strings.Contains(errb.String(), "has mode 0644; want 0600") {
		t.Fatalf("token with a secret of mode 0644: exit %d, %q %q; want 1 and the mode named", code, out.String(), errb.String())
	}
}

// TestNoCommandShowsHelp: hubctl alone prints its help and exits 0.
func TestNoCommandShowsHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "Available Commands:") {
		t.Fatalf("hubctl: exit %d, stdout %q, stderr %q; want help and exit 0", code, out.String(), errb.String())
	}
}

func TestHelpShowsExamples(t *testing.T) {
	for _, cmd := range []string{"kick", "ban", "unban", "notify", "sessions", "token"} {
		var out, errb bytes.Buffer
		if code := run([]string{cmd, "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "hubctl "+cmd) {
			t.Errorf("%s --help: exit %d, no example:\n%s", cmd, code, out.String())
		}
	}
}

// connectCmd runs hubctl connect in the background; wait returns its exit
// code and output.
func (h *hubd) connectCmd(args ...string) (out *syncbuf.Buffer, wait func() (int, string)) {
	out = &syncbuf.Buffer{}
	errb := &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"connect", "--addr", h.addr}, args...), out, errb) }()
	return out, func() (int, string) {
		select {
		case code := <-done:
			return code, errb.String()
		case <-time.After(20 * time.Second):
			h.t.Fatalf("hubctl connect did not exit; output so far:\n%s", out.String())
			return 0, ""
		}
	}
}

// waitLine waits until out has a line containing s.
func waitLine(t *testing.T, out *syncbuf.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in output:\n%s", s, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnectExitCodes(t *testing.T) {
	h := startHub(t)

	// Kicked: exit 3, with the welcome, the notification and the
	// Disconnect frame printed as JSON lines.
	out, wait := h.connectCmd("--user", "ann", "--device", "phone")
	waitLine(t, out, `"welcome"`)
	if code, _, errs := h.ctl("notify", "--user", "ann", "--topic", "chat", "--payload", `{"x":1}`); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"notification"`)
	if code, _, errs := h.ctl("kick", "--user", "ann", "--reason", "test kick", "--no-reconnect"); code != 0 {
		t.Fatal(errs)
	}
	code, errs := wait()
	if code != exitKicked || !strings.Contains(errs, `kicked: "test kick" (reconnect not_allowed)`) {
		t.Fatalf("kicked: exit %d, stderr %q", code, errs)
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("not a JSON line: %q", line)
		}
	}
	// One naming style (lower snake case, the ledger's causes) and one
	// payload rendering (the JSON value itself).
	if !strings.Contains(out.String(), `"code":"kicked"`) || !strings.Contains(out.String(), `"reconnect":"not_allowed"`) ||
		!strings.Contains(out.String(), `"client_disconnect":{"cause":"kicked"`) || !strings.Contains(out.String(), `"code":"aborted"`) ||
		!strings.Contains(out.String(), `"payload":{"x":1}`) || strings.Contains(out.String(), "DISCONNECT_CODE_") {
		t.Fatalf("output lacks the disconnect:\n%s", out.String())
	}
	if n := h.last(eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT); n.GetUser() != "ann" {
		t.Fatalf("notification event %v", n)
	}

	// Superseded: exit 5.
	out, wait = h.connectCmd("--user", "bo", "--device", "tablet")
	waitLine(t, out, `"welcome"`)
	_, _ = h.hold("bo", "tablet")
	if code, errs := wait(); code != exitSuperseded {
		t.Fatalf("superseded: exit %d, stderr %q", code, errs)
	}

	// Banned: refused at connect, exit 4.
	if code, _, errs := h.ctl("ban", "--user", "cy", "--for", "1h", "--reason", "spam"); code != 0 {
		t.Fatal(errs)
	}
	_, wait = h.connectCmd("--user", "cy", "--device", "d")
	if code, errs := wait(); code != exitRejected || !strings.Contains(errs, "spam") {
		t.Fatalf("banned: exit %d, stderr %q", code, errs)
	}

	// Normal end: --for elapses, Goodbye is recorded as client_closed, exit 0.
	out, wait = h.connectCmd("--user", "di", "--device", "d", "--for", "300ms")
	if code, errs := wait(); code != 0 {
		t.Fatalf("normal end: exit %d, stderr %q, out %q", code, errs, out.String())
	}
	if d := h.last(eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED); d.GetUser() != "di" ||
		d.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatalf("end event %v", d)
	}

	// Unreachable: exit 1.
	var o, e bytes.Buffer
	if code := run([]string{"connect", "--user", "x", "--addr", "127.0.0.1:1", "--timeout", "2s"}, &o, &e); code != exitFailure {
		t.Fatalf("unreachable: exit %d %q", code, e.String())
	}
}

// TestConnectReconnectResumes: with --reconnect a kick that allows coming
// back after 300 ms is followed by a resume, and a notification sent in
// between is redelivered.
func TestConnectReconnectResumes(t *testing.T) {
	h := startHub(t)
	out, wait := h.connectCmd("--user", "eve", "--device", "d", "--reconnect", "--for", "3s")
	waitLine(t, out, `"welcome"`)
	if code, _, errs := h.ctl("kick", "--user", "eve", "--reason", "rebalance", "--reconnect-after", "300ms"); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"will_reconnect":true`)
	// Sent while eve is away (she waits at least 300 ms): redelivered on
	// the resume.
	if code, _, errs := h.ctl("notify", "--user", "eve", "--topic", "missed", "--payload", `{"n":1}`); code != 0 {
		t.Fatal(errs)
	}
	waitLine(t, out, `"resumed_from"`)
	waitLine(t, out, `"redelivered":true`)
	if !strings.Contains(out.String(), `"topic":"missed"`) {
		t.Fatalf("the missed notification was not redelivered:\n%s", out.String())
	}
	if code, errs := wait(); code != 0 {
		t.Fatalf("exit %d %q", code, errs)
	}
	if r := h.last(eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED); r.GetUser() != "eve" {
		t.Fatalf("reconnect event %v", r)
	}
}

// TestSessionsEscapesNames: a device name that clears the screen, sets the
// window title and forges a row (issue 11) is listed escaped by `hubctl
// sessions`, and exactly as recorded by `--json`. The hub refuses such
// names at its door; this session was recorded by another node.
func TestSessionsEscapesNames(t *testing.T) {
	const device = "x\033]0;owned\007\033[2J\nFAKE_ROW\tkick_requested\talice"
	h := startHubOn(t, func(s *ledger.Store) {
		if _, err := s.Append(context.Background(), &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "alice\033[8m",
			Device: device, Session: "s-evil", Node: "node-2", Actor: "alice",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}); err != nil {
			t.Fatal(err)
		}
	}, nil)
	code, out, errs := h.ctl("sessions")
	if code != 0 {
		t.Fatalf("sessions: exit %d: %s", code, errs)
	}
	if strings.ContainsAny(out, "\033\007\t") || strings.Count(out, "\n") != 3 || strings.Contains(out, "\nFAKE_ROW") {
		t.Fatalf("sessions printed control characters or a forged row:\n%q", out)
	}
	if want := `"x\x1b]0;owned\a\x1b[2J\nFAKE_ROW\tkick_requested\talice"`; !strings.Contains(out, want) || !strings.Contains(out, `"alice\x1b[8m"`) {
		t.Fatalf("sessions:\n%s\nwant the device as %s and the user escaped", out, want)
	}
	code, out, errs = h.ctl("sessions", "--json")
	var got struct{ User, Device string }
	if code != 0 || json.Unmarshal([]byte(strings.TrimSpace(out)), &got) != nil || got.Device != device || got.User != "alice\033[8m" {
		t.Fatalf("sessions --json: exit %d, %q (%s); want the names exact", code, out, errs)
	}
}

// TestCallErrorOutcomeUnknown: a call the cluster's log may still record
// exits 7, not 1, so a script that retries failed calls does not repeat
// an action that may yet take effect; a plain Unavailable stays 1.
func TestCallErrorOutcomeUnknown(t *testing.T) {
	st, err := status.New(codes.Unavailable, "outcome unknown: the cluster's log did not answer for message m1").
		WithDetails(&errdetails.ErrorInfo{Reason: hubapi.ReasonOutcomeUnknown, Domain: hubapi.ErrorDomain, Metadata: map[string]string{"messages": "m1"}})
	if err != nil {
		t.Fatal(err)
	}
	var ee *exitError
	if got := callError("kick", st.Err()); !errors.As(got, &ee) || ee.code != exitOutcomeUnknown || !strings.Contains(got.Error(), "kick: Unavailable: outcome unknown") {
		t.Fatalf("callError(outcome unknown) = %v; want exit %d with the server's message", got, exitOutcomeUnknown)
	}
	if got := callError("kick", status.Error(codes.Unavailable, "ledger unavailable")); errors.As(got, &ee) {
		t.Fatalf("callError(plain Unavailable) = exit %d; want the default failure", ee.code)
	}
}
