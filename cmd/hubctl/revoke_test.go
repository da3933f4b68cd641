package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestTokenJSONAndRevoke: hubctl token puts iat and a jti in its tokens;
// hubctl revoke --jti ends the session holding it and is recorded with
// the operator and reason; --user revokes by issue time.
func TestTokenJSONAndRevoke(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	h := startHubWith(t, func(c *hub.Config) { c.JWTSecret = secret })
	key := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(key, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := h.ctl("token", "--user", "zoe", "--device", "phone", "--secret-file", key, "--json")
	var tok struct{ Token, JTI, IAT, Exp string }
	if code != 0 || json.Unmarshal([]byte(out), &tok) != nil || tok.JTI == "" || tok.IAT == "" {
		t.Fatalf("token --json: %d %q %q", code, out, errs)
	}
	if _, err := time.Parse(time.RFC3339, tok.IAT); err != nil {
		t.Fatalf("iat %q: %v", tok.IAT, err)
	}
	// Revoking a token nobody holds is recorded all the same.
	code, out, errs = h.ctl("revoke", "--jti", tok.JTI, "--reason", "leaked in a log")
	if code != 0 || !strings.Contains(out, "revoked: event") || !strings.Contains(out, "the revocation is recorded") {
		t.Fatalf("revoke --jti: %d %q %q", code, out, errs)
	}
	ev := h.last(eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED)
	if ev.GetTokenRevoked().GetTokenId() != tok.JTI || ev.GetActor() != "ops-carol" || ev.GetReason() != "leaked in a log" {
		t.Fatalf("revocation %v", ev)
	}
	code, out, errs = h.ctl("revoke", "--user", "zoe", "--before", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339), "--reason", "log out everywhere", "--json")
	if code != 0 || !strings.Contains(out, `"event_id"`) {
		t.Fatalf("revoke --user: %d %q %q", code, out, errs)
	}
	for _, bad := range [][]string{
		{"revoke", "--reason", "x"},
		{"revoke", "--jti", "a", "--user", "b", "--reason", "x"},
		{"revoke", "--jti", "a"},
		{"revoke", "--user", "b", "--before", "yesterday", "--reason", "x"},
		{"revoke", "--user", "b", "--expires", "2030-01-01T00:00:00Z", "--reason", "x"},
	} {
		if code, _, _ := h.ctl(bad...); code != exitUsage {
			t.Errorf("%q: exit %d; want %d", bad, code, exitUsage)
		}
	}
}

// TestAdminTokenCommands: admin-token add mints a named token with a role
// that works at once (hubd re-reads the file), list shows names and roles
// but no token, remove takes it away.
func TestAdminTokenCommands(t *testing.T) {
	h := startHubDaemon(t, func(c *hub.Config) { c.Admins = nil }, daemonWatch(20*time.Millisecond))
	code, tok, errs := h.ctl("admin-token", "add", "--name", "audit-1", "--role", "auditor")
	tok = strings.TrimSpace(tok)
	if code != 0 || len(tok) < hubapi.MinAdminTokenLen {
		t.Fatalf("add: %d %q %q", code, tok, errs)
	}
	code, out, _ := h.ctl("admin-token", "list")
	if code != 0 || !strings.Contains(out, "audit-1") || !strings.Contains(out, "auditor") || strings.Contains(out, tok) {
		t.Fatalf("list: %d %q; want names and roles, no token", code, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, _ := h.ctl("sessions", "--token", tok); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new auditor token is not accepted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, _, errs = h.ctl("kick", "--user", "x", "--reason", "x", "--token", tok)
	if code != exitFailure || !strings.Contains(errs, "PermissionDenied") || !strings.Contains(errs, "needs role operator") {
		t.Fatalf("auditor kick: %d %q", code, errs)
	}
	var buf bytes.Buffer
	_ = h.store.Scan(t.Context(), 1, 0, func(r *ledger.Record) error {
		if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED {
			buf.WriteString(r.Event.GetActor())
		}
		return nil
	})
	if buf.String() != "audit-1" {
		t.Fatalf("refused calls recorded by %q; want audit-1", buf.String())
	}
	if code, _, errs := h.ctl("admin-token", "add", "--name", "audit-1", "--role", "auditor"); code != exitFailure || !strings.Contains(errs, "exists") {
		t.Fatalf("add twice: %d %q", code, errs)
	}
	if code, _, _ := h.ctl("admin-token", "add", "--name", "x", "--role", "root"); code != exitUsage {
		t.Fatalf("unknown role: exit %d; want %d", code, exitUsage)
	}
	if code, out, errs := h.ctl("admin-token", "remove", "--name", "audit-1"); code != 0 {
		t.Fatalf("remove: %d %q %q", code, out, errs)
	}
	if code, out, _ := h.ctl("admin-token", "list"); code != 0 || strings.Contains(out, "audit-1") {
		t.Fatalf("list after remove: %q", out)
	}
}
