package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// tokenLedger writes a small ledger of token events (a hub's, in its
// order): erin connects with token tok-e1, ops-rita revokes it, the
// session ends revoked, erin's next connect with it is refused naming the
// revocation, an auditor's kick is refused; then a user revocation of
// finn, a refresh and a refused refresh.
func tokenLedger(t *testing.T) (path string, t0 time.Time) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "tokens.db")
	t0 = audittest.Start
	var clk time.Time
	st, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { return clk }})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	at := func(d time.Duration, ev *eventpb.Event) ledger.Stamp {
		clk = t0.Add(d)
		s, err := st.Append(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		return s[0]
	}
	tok := func(id string) *eventpb.ClientToken {
		return &eventpb.ClientToken{Id: id, IssuedUnixNano: t0.UnixNano(), ExpiresUnixNano: t0.Add(time.Hour).UnixNano()}
	}
	at(0, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "erin", Device: "phone", Session: "s-erin-1", Node: "n1", Actor: "erin",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "10.0.0.5:1", Token: tok("tok-e1")}}})
	rev := at(time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: "erin", Actor: "ops-rita", Reason: "phone stolen",
		Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{TokenId: "tok-e1", UntilUnixNano: t0.Add(time.Hour).UnixNano()}}})
	at(time.Minute+time.Second, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: "erin", Device: "phone", Session: "s-erin-1",
		Node: "n1", Actor: "ops-rita", Reason: "phone stolen",
		Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED,
			CauseEventId: rev.ID[:], Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED}}})
	at(2*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED, User: "erin", Device: "phone", Actor: "system", Reason: "token revoked: phone stolen",
		Body: &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: "revoked", Count: 1, CauseEventId: rev.ID[:]}}})
	at(3*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED, Actor: "comp-carl", Reason: "role auditor may not call Admin/Kick (needs operator)",
		Body: &eventpb.Event_AdminCallRefused{AdminCallRefused: &eventpb.AdminCallRefused{Method: "/sessionledger.hub.v1.Admin/Kick", Role: "auditor", Needs: "operator", Count: 4}}})
	at(4*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, User: "finn", Actor: "ops-rita", Reason: "password changed",
		Body: &eventpb.Event_TokenRevoked{TokenRevoked: &eventpb.TokenRevoked{IssuedBeforeUnixNano: t0.Add(4 * time.Minute).UnixNano(),
			UntilUnixNano: t0.Add(4*time.Minute + 24*time.Hour).UnixNano()}}})
	at(5*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "erin", Device: "laptop", Session: "s-erin-2", Node: "n1", Actor: "erin",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{Token: tok("tok-e2")}}})
	at(6*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, User: "erin", Device: "laptop", Session: "s-erin-2", Actor: "erin",
		Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{Token: tok("tok-e3")}}})
	at(7*time.Minute, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED, User: "erin", Device: "laptop", Session: "s-erin-2", Actor: "erin",
		Reason: `the token is for user "mallory", not the session's`,
		Body:   &eventpb.Event_TokenRefreshRefused{TokenRefreshRefused: &eventpb.TokenRefreshRefused{Code: "other_user", TokenUser: "mallory"}}})
	return path, t0
}

// TestRevocationsInAuditq: revocations and the other token events show in
// timelines (with who and why, and the refusal naming the revocation),
// events, stats, and the state at a time (revocations --at, which drops a
// revocation once it lapsed).
func TestRevocationsInAuditq(t *testing.T) {
	db, t0 := tokenLedger(t)
	r := run(t, nil, "--db", db, "timeline", "--user", "erin")
	if r.code != 0 {
		t.Fatalf("timeline: %d %s", r.code, r.stderr)
	}
	for _, want := range []string{
		"session s-erin-1 connected: erin on device phone from 10.0.0.5:1 via node n1, token tok-e1 expiring",
		`token tok-e1 (held by erin) revoked by ops-rita: "phone stolen" (in force until`,
		`session s-erin-1 ended: revoked (its token was revoked) by ops-rita for "phone stolen" (revocation at seq 2); reconnect not allowed`,
		`connect of erin on device phone rejected (revoked): "token revoked: phone stolen"; by the revocation at seq 2 by ops-rita`,
		"session s-erin-2 refreshed its token, token tok-e3 expiring",
		`token refresh of session s-erin-2 refused (other_user), the token was for user mallory: "the token is for user \"mallory\", not the session's"`,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("timeline lacks %q:\n%s", want, r.stdout)
		}
	}
	r = run(t, nil, "--db", db, "events", "--type", "token_revoked,admin_call_refused", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 || !strings.Contains(lines[0], `"token_id":"tok-e1"`) || !strings.Contains(lines[1], `"method":"/sessionledger.hub.v1.Admin/Kick"`) ||
		!strings.Contains(lines[2], `"issued_before"`) {
		t.Fatalf("events: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "--db", db, "stats", "--json")
	var st struct {
		Revokes []struct {
			Key   string
			Count uint64
		} `json:"revokes_by_actor"`
		Refused []struct {
			Key   string
			Count uint64
		} `json:"refused_admin_calls"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || len(st.Revokes) != 1 || st.Revokes[0].Key != "ops-rita" || st.Revokes[0].Count != 2 ||
		len(st.Refused) != 1 || st.Refused[0].Key != "comp-carl" || st.Refused[0].Count != 4 {
		t.Fatalf("stats: %d %q", r.code, r.stdout)
	}
	if r = run(t, nil, "--db", db, "stats"); !strings.Contains(r.stdout, "Token revocations ordered, per operator") || !strings.Contains(r.stdout, "comp-carl") {
		t.Fatalf("stats table: %s", r.stdout)
	}
	// State at a time: both revocations at +5m; the jti one lapsed at +1h.
	r = run(t, nil, "--db", db, "revocations", "--at", t0.Add(5*time.Minute).Format(time.RFC3339), "--csv")
	if r.code != 0 || !strings.Contains(r.stdout, "tok-e1,erin,,") || !strings.Contains(r.stdout, ",finn,") {
		t.Fatalf("revocations at +5m: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "--db", db, "revocations", "--at", t0.Add(2*time.Hour).Format(time.RFC3339), "--json")
	if r.code != 0 || strings.Contains(r.stdout, "tok-e1") || !strings.Contains(r.stdout, `"user":"finn"`) {
		t.Fatalf("revocations at +2h: %d %q %s", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "--db", db, "revocations", "--at", t0.Add(5*time.Minute).Format(time.RFC3339), "--user", "finn")
	if r.code != 0 || strings.Contains(r.stdout, "tok-e1") || !strings.Contains(r.stdout, "password changed") {
		t.Fatalf("revocations of finn: %d %q %s", r.code, r.stdout, r.stderr)
	}
}
