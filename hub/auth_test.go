package hub_test

import (
	"crypto/tls"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/testtls"
)

// metric returns the line of the hub's /metrics output that starts with
// prefix, or "".
func (e *env) metric(prefix string) string {
	rec := httptest.NewRecorder()
	e.d.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestJWTEndToEnd: with a secret configured, a client is who its HS256
// token says; anything else is Unauthenticated, counted, and leaves no
// trace in the ledger.
func TestJWTEndToEnd(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	e := newEnv(t, hub.Config{JWTSecret: secret})
	now := time.Now()
	mint := func(key []byte, user, device string, ttl time.Duration) string {
		tok, err := hubapi.MintToken(key, user, device, ttl, now)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := mint(secret, "jim", "phone", time.Hour)
	payload := strings.Split(good, ".")[1]
	for _, c := range []struct {
		name string
		h    *hubpb.Hello
	}{
		{"expired", &hubpb.Hello{Token: mint(secret, "jim", "phone", -time.Minute)}},
		{"wrong secret", &hubpb.Hello{Token: mint([]byte(strings.Repeat("z", 32)), "jim", "phone", time.Hour)}},
		{"alg none", &hubpb.Hello{Token: "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + "."}},
		{"not a JWT", &hubpb.Hello{Token: "a.b.c"}},
		{"missing", &hubpb.Hello{User: "jim", Device: "phone"}},
		{"sub mismatch", &hubpb.Hello{Token: good, User: "root"}},
		{"device mismatch", &hubpb.Hello{Token: good, Device: "tablet"}},
	} {
		if _, err := e.dialHello(c.h); codeOf(err) != codes.Unauthenticated {
			t.Errorf("%s: %v; want Unauthenticated", c.name, err)
		}
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("refused tokens recorded %d events", h)
	}
	if got := e.metric("sessionledger_auth_failures_total "); got != "sessionledger_auth_failures_total 7" {
		t.Errorf("metric %q; want 7 auth failures", got)
	}
	// The token alone identifies; matching Hello fields are fine; without
	// a device claim the device comes from Hello.
	a, err := e.dialHello(&hubpb.Hello{Token: good})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.dialHello(&hubpb.Hello{Token: good, User: "jim", Device: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.dialHello(&hubpb.Hello{Token: mint(secret, "kim", "", time.Hour), Device: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	e.expectLedger(1,
		"session_connected jim/phone "+a.welcome.GetSessionId(),
		"session_connected jim/phone "+b.welcome.GetSessionId(),
		"session_connected kim/watch "+c.welcome.GetSessionId())
}

// TestNameRulesWhicheverWayANameArrives: a user or device is held to one
// rule (at most MaxNameBytes, no control character, line break or
// bidirectional formatting character) whether it comes from Hello or from
// a token's claims. A JWT sub of 1,024 bytes used to pass the 256-byte
// limit Hello enforces, and a device from Hello could hold escape
// sequences that reached operators' terminals.
func TestNameRulesWhicheverWayANameArrives(t *testing.T) {
	const hostile = "x\033]0;owned\007\033[2J\nFAKE_ROW\tkick_requested\talice"
	secret := []byte("0123456789abcdef0123456789abcdef")
	mint := func(user, device string) string {
		tok, err := hubapi.MintToken(secret, user, device, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	withJWT := newEnv(t, hub.Config{JWTSecret: secret})
	open := newEnv(t, hub.Config{})
	for _, c := range []struct {
		name string
		e    *env
		h    *hubpb.Hello
		want string
	}{
		{"token sub of 1024 bytes", withJWT, &hubpb.Hello{Token: mint(strings.Repeat("u", 1024), "")}, "user is 1024 bytes; at most 256"},
		{"token device claim of 300 bytes", withJWT, &hubpb.Hello{Token: mint("u", strings.Repeat("d", 300))}, "device is 300 bytes"},
		{"token device claim with escapes", withJWT, &hubpb.Hello{Token: mint("u", hostile)}, "device holds U+001B"},
		{"token sub with a line break", withJWT, &hubpb.Hello{Token: mint("u\nroot", "")}, "user holds U+000A"},
		{"Hello device with escapes, token without a device", withJWT, &hubpb.Hello{Token: mint("u", ""), Device: hostile}, "device holds U+001B"},
		{"Hello device with escapes", open, &hubpb.Hello{User: "u", Device: hostile}, "device holds U+001B"},
		{"Hello user with a bidi override", open, &hubpb.Hello{User: "u\u202e", Device: "d"}, "user holds U+202E"},
		{"Hello user of 257 bytes", open, &hubpb.Hello{User: strings.Repeat("u", 257), Device: "d"}, "user is 257 bytes"},
	} {
		_, err := c.e.dialHello(c.h)
		if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want InvalidArgument saying %q", c.name, err, c.want)
		}
	}
	for _, e := range []*env{withJWT, open} {
		if h := e.store.Head().Seq; h != 0 {
			t.Errorf("refused Hellos recorded %d events", h)
		}
	}
	// Printable names, spaces and letters of any script are names.
	if _, err := open.dialHello(&hubpb.Hello{User: "Zoë", Device: "Zoë's phone 📱"}); err != nil {
		t.Fatal(err)
	}
}

// selfSigned makes a certificate for 127.0.0.1 and returns the server's
// credentials and a client's that trust it.
func selfSigned(t *testing.T) (server, client credentials.TransportCredentials) {
	t.Helper()
	c := testtls.SelfSigned(t)
	server = credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{c.TLS}, MinVersion: tls.VersionTLS12})
	client = credentials.NewTLS(&tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12})
	return server, client
}

// TestTLS: over TLS sessions and admin calls work as in plaintext; a
// plaintext client gets nowhere and nothing is recorded for it.
func TestTLS(t *testing.T) {
	server, client := selfSigned(t)
	e := newEnvWith(t, hub.Config{}, server, client)
	c := e.mustDial("tina", "laptop")
	rep, err := e.admin.Kick(adminCtx(ctxT(t)), &hubpb.KickRequest{User: "tina", Reason: "tls works"})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := c.expectEnd(); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != rep.GetEventId() {
		t.Fatalf("end over TLS: %v; want kicked by %s", d, rep.GetEventId())
	}
	e.waitEnd(1, c.welcome.GetSessionId())
	head := e.store.Head().Seq

	plain, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	st, err := hubpb.NewHubClient(plain).Connect(ctxT(t))
	if err == nil {
		_ = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "tina", Device: "laptop"}}})
		_, err = st.Recv()
	}
	if codeOf(err) != codes.Unavailable {
		t.Fatalf("plaintext client against TLS: %v; want Unavailable", err)
	}
	if e.store.Head().Seq != head {
		t.Fatal("a plaintext client's attempt was recorded")
	}
}

// TestBearerSchemeIsCaseInsensitive: "bearer", "BEARER" and "Bearer" all
// carry the admin token (RFC 6750); other schemes do not.
func TestBearerSchemeIsCaseInsensitive(t *testing.T) {
	e := newEnv(t, hub.Config{})
	for _, v := range []string{"Bearer " + adminToken, "bearer " + adminToken, "BEARER " + adminToken} {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", v)
		if _, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{}); err != nil {
			t.Errorf("authorization %q: %v", v[:7], err)
		}
	}
	for _, v := range []string{"Basic " + adminToken, adminToken, "Bearer"} {
		ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", v)
		if _, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{}); codeOf(err) != codes.Unauthenticated {
			t.Errorf("authorization %q: %v; want Unauthenticated", v, err)
		}
	}
}

// TestFirstAdminTokenKeepsFileOrder: hubctl and auditq use the first token
// of the file, whatever the actors are called.
func TestFirstAdminTokenKeepsFileOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), hubapi.AdminTokenFile)
	if err := os.WriteFile(path, []byte("# operators\nops-bob token-of-bob-0123456789\nops-amy token-of-amy-0123456789\nadmin token-of-admin-012345678\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 20 { // a map would give another answer now and then
		if tok, err := hubapi.FirstAdminToken(path); err != nil || tok != "token-of-bob-0123456789" {
			t.Fatalf("FirstAdminToken = %q, %v; want the first line's token", tok, err)
		}
	}
	toks, err := hubapi.ReadAdminTokens(path)
	if err != nil || len(toks) != 3 || toks["token-of-amy-0123456789"] != "ops-amy" {
		t.Fatalf("ReadAdminTokens = %v, %v", toks, err)
	}
}

// TestAdminTokenCreatedOnce: processes starting together on one data
// directory agree on one admin token file: exactly one creates it, whole,
// and the others read it; no temporary file is left.
func TestAdminTokenCreatedOnce(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	tokens := make([][]hubapi.AdminToken, n)
	created := make([]bool, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if tokens[i], created[i], err = hubapi.LoadOrCreateAdminTokens(dir); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	creators := 0
	for i := range n {
		if created[i] {
			creators++
		}
		if fmt.Sprint(tokens[i]) != fmt.Sprint(tokens[0]) || len(tokens[i]) != 1 {
			t.Fatalf("caller %d got %v; caller 0 got %v", i, tokens[i], tokens[0])
		}
	}
	entries, _ := os.ReadDir(dir)
	if creators != 1 || len(entries) != 1 {
		t.Fatalf("%d creators, directory %v; want one creator and only %s", creators, entries, hubapi.AdminTokenFile)
	}
	if info, err := os.Stat(filepath.Join(dir, hubapi.AdminTokenFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v %v; want mode 0600", info, err)
	}
}
