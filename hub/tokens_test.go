package hub_test

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// clock is a Config.Now that tests move forward.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

// claims are a client token's: user on device, with jti id, issued at
// iat and expiring at exp.
func claims(user, device, id string, iat, exp time.Time) hubapi.Claims {
	return hubapi.Claims{Device: device, RegisteredClaims: jwt.RegisteredClaims{ID: id, Subject: user,
		IssuedAt: jwt.NewNumericDate(iat), ExpiresAt: jwt.NewNumericDate(exp)}}
}

func signHS(t *testing.T, c hubapi.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rejectedWith checks a refused connect: status code, Rejected code and,
// if eventID is set, the event it names.
func rejectedWith(t *testing.T, err error, code codes.Code, rjCode, eventID string) *hubpb.Rejected {
	t.Helper()
	st, rj := rejected(t, err)
	if st.Code() != code || rj.GetCode() != rjCode || (eventID != "" && rj.GetEventId() != eventID) {
		t.Fatalf("refusal %v %v; want %s %s naming %q", st, rj, code, rjCode, eventID)
	}
	return rj
}

// endedWith reads c to its end and checks the Disconnect's code and event.
func endedWith(t *testing.T, c *client, code hubpb.DisconnectCode, eventID string) *hubpb.Disconnect {
	t.Helper()
	d, st := c.expectEnd()
	if d.GetCode() != code || d.GetEventId() != eventID {
		t.Fatalf("end %v (status %v); want %s naming %q", d, st, code, eventID)
	}
	return d
}

func (e *env) revoke(req *hubpb.RevokeRequest) *hubpb.ActionReply {
	e.t.Helper()
	if req.Reason == "" {
		req.Reason = "stolen token"
	}
	rep, err := e.admin.Revoke(adminCtx(ctxT(e.t)), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

// rejectedRecord waits for the connect_rejected event after from with
// code and checks it names the causing event.
func (e *env) rejectedRecord(from uint64, code, cause string) *ledger.Record {
	e.t.Helper()
	r := e.waitEvent(from, "connect_rejected "+code, func(r *ledger.Record) bool {
		return r.Event.GetType() == eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED && r.Event.GetConnectRejected().GetCode() == code
	})
	if got := r.Event.GetConnectRejected().GetCauseEventId(); len(got) != 16 || ulid.ULID(got).String() != cause {
		e.t.Fatalf("connect_rejected %s names %x; want %s", code, got, cause)
	}
	return r
}

// TestRevokeByTokenID: the session holding the token ends with cause
// revoked and the revocation's id; another token of the same user stays;
// the revoked token is refused (recorded, naming the revocation); a new
// token is welcome.
func TestRevokeByTokenID(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret, RejectWindow: time.Hour})
	now := time.Now()
	stolen := signHS(t, claims("ann", "phone", "jti-stolen", now, now.Add(time.Hour)))
	phone, err := e.dialHello(&hubpb.Hello{Token: stolen})
	if err != nil {
		t.Fatal(err)
	}
	laptop, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("ann", "laptop", "jti-laptop", now, now.Add(time.Hour)))})
	if err != nil {
		t.Fatal(err)
	}
	rep := e.revoke(&hubpb.RevokeRequest{TokenId: "jti-stolen", Reason: "phone stolen"})
	if rep.GetSessions() != 1 {
		t.Fatalf("revocation addressed %d sessions; want 1", rep.GetSessions())
	}
	d := endedWith(t, phone, hubpb.DisconnectCode_DISCONNECT_CODE_REVOKED, rep.GetEventId())
	if d.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED || d.GetReason() != "phone stolen" || d.GetActor() != "ops-alice" {
		t.Fatalf("revoked end %v; want not_allowed, the reason and the actor", d)
	}
	end := e.waitEnd(rep.GetSeq(), phone.welcome.GetSessionId())
	if c := end.Event.GetSessionDisconnected(); c.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED || ulid.ULID(c.GetCauseEventId()).String() != rep.GetEventId() {
		t.Fatalf("recorded end %v; want revoked by %s", c, rep.GetEventId())
	}
	// The revocation is indexed under the token's user.
	rev := e.events(rep.GetSeq())[0]
	if rev.Event.GetUser() != "ann" || rev.Event.GetTokenRevoked().GetTokenId() != "jti-stolen" || rev.Event.GetActor() != "ops-alice" {
		t.Fatalf("revocation event %v", rev.Event)
	}
	head := e.store.Head().Seq
	_, err = e.dialHello(&hubpb.Hello{Token: stolen, Device: "phone"})
	rejectedWith(t, err, codes.PermissionDenied, "revoked", rep.GetEventId())
	e.rejectedRecord(head, "revoked", rep.GetEventId())
	// The laptop's session is untouched; a new token for the phone works.
	if _, err := e.admin.GetSession(adminCtx(ctxT(t)), &hubpb.GetSessionRequest{SessionId: laptop.welcome.GetSessionId()}); err != nil {
		t.Fatalf("laptop session: %v", err)
	}
	if _, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("ann", "phone", "jti-new", now, now.Add(time.Hour)))}); err != nil {
		t.Fatalf("new token: %v", err)
	}
}

// TestRevokeIssuedBefore: every token of the user issued before T is
// revoked (live sessions end, a connect with one is refused), a token
// issued at or after T is welcome, and other users are untouched.
func TestRevokeIssuedBefore(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret, RejectWindow: time.Hour})
	now := time.Now()
	old := signHS(t, claims("bo", "phone", "old-1", now.Add(-time.Minute), now.Add(time.Hour)))
	a, err := e.dialHello(&hubpb.Hello{Token: old})
	if err != nil {
		t.Fatal(err)
	}
	other, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("cy", "phone", "cy-1", now.Add(-time.Minute), now.Add(time.Hour)))})
	if err != nil {
		t.Fatal(err)
	}
	before := now.Add(-10 * time.Second)
	rep := e.revoke(&hubpb.RevokeRequest{User: "bo", IssuedBeforeUnixNano: before.UnixNano(), Reason: "log out everywhere"})
	endedWith(t, a, hubpb.DisconnectCode_DISCONNECT_CODE_REVOKED, rep.GetEventId())
	rev := e.events(rep.GetSeq())[0].Event.GetTokenRevoked()
	if rev.GetIssuedBeforeUnixNano() != before.UnixNano() || rev.GetUntilUnixNano() != before.Add(24*time.Hour).UnixNano() {
		t.Fatalf("revocation %v; want issued before %s, lapsing a max token lifetime later", rev, before)
	}
	head := e.store.Head().Seq
	_, err = e.dialHello(&hubpb.Hello{Token: signHS(t, claims("bo", "tablet", "old-2", now.Add(-time.Minute), now.Add(time.Hour)))})
	rejectedWith(t, err, codes.PermissionDenied, "revoked", rep.GetEventId())
	e.rejectedRecord(head, "revoked", rep.GetEventId())
	if _, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("bo", "phone", "fresh", now, now.Add(time.Hour)))}); err != nil {
		t.Fatalf("token issued after T: %v", err)
	}
	if _, err := e.admin.GetSession(adminCtx(ctxT(t)), &hubpb.GetSessionRequest{SessionId: other.welcome.GetSessionId()}); err != nil {
		t.Fatalf("another user's session: %v", err)
	}
	// Bad requests record nothing.
	head = e.store.Head().Seq
	for _, req := range []*hubpb.RevokeRequest{
		{Reason: "no target"},
		{TokenId: "x", User: "bo", Reason: "two targets"},
		{User: "bo", IssuedBeforeUnixNano: time.Now().Add(time.Hour).UnixNano(), Reason: "future"},
		{TokenId: "x", TokenExpiresUnixNano: time.Now().Add(-time.Hour).UnixNano(), Reason: "expired already"},
		{TokenId: "x"},
	} {
		if _, err := e.admin.Revoke(adminCtx(ctxT(t)), req); codeOf(err) != codes.InvalidArgument {
			t.Errorf("revoke %v: %v; want InvalidArgument", req, err)
		}
	}
	if h := e.store.Head().Seq; h != head {
		t.Fatalf("refused revocations recorded %d events", h-head)
	}
}

// refreshFrame sends a Refresh and returns the Refreshed answer.
func (c *client) refresh(token string) *hubpb.Refreshed {
	c.t.Helper()
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Refresh{Refresh: &hubpb.Refresh{Token: token}}}); err != nil {
		c.t.Fatal(err)
	}
	for {
		f, err := c.next()
		if err != nil {
			c.t.Fatalf("waiting for Refreshed: %v", err)
		}
		if r := f.GetRefreshed(); r != nil {
			return r
		}
	}
}

// TestTokenExpiryAndRefresh: a session ends with token_expired (recorded)
// when its token expires, unless a Refresh moved the expiry; a refresh for
// another user or device, or one that is not fresher, is refused and
// recorded, and the session keeps its token.
func TestTokenExpiryAndRefresh(t *testing.T) {
	clk := &clock{}
	e := newEnv(t, hub.Config{JWTSecret: testSecret, Now: clk.now, HeartbeatInterval: 50 * time.Millisecond, IdleTimeout: time.Hour})
	now := clk.now()
	c, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("di", "phone", "t1", now, now.Add(time.Minute)))})
	if err != nil {
		t.Fatal(err)
	}
	exp1 := jwt.NewNumericDate(now.Add(time.Minute)).Time
	if got := c.welcome.GetTokenExpiresUnixNano(); got != exp1.UnixNano() {
		t.Fatalf("welcome says the token expires at %d; want %d", got, exp1.UnixNano())
	}
	head := e.store.Head().Seq
	// Refused: another user, another device, not fresher.
	for _, bad := range []struct {
		tok, code string
	}{
		{signHS(t, claims("eve", "phone", "e1", now, now.Add(2*time.Minute))), "other_user"},
		{signHS(t, claims("di", "laptop", "t9", now, now.Add(2*time.Minute))), "other_device"},
		{signHS(t, claims("di", "phone", "t0", now, now.Add(30*time.Second))), "not_fresher"},
		{"not-a-token", "invalid_token"},
	} {
		r := c.refresh(bad.tok)
		if r.GetOk() || r.GetTokenExpiresUnixNano() != exp1.UnixNano() || r.GetEventId() == "" {
			t.Fatalf("refresh %s: %v; want refused, the old expiry kept, the refusal's event", bad.code, r)
		}
		rec := e.waitEvent(head, "token_refresh_refused "+bad.code, func(r *ledger.Record) bool {
			return r.Event.GetTokenRefreshRefused().GetCode() == bad.code
		})
		if rec.ID.String() != r.GetEventId() || rec.Event.GetSession() != c.welcome.GetSessionId() || rec.Event.GetUser() != "di" {
			t.Fatalf("recorded refusal %v; want the session's, named in the answer", rec.Event)
		}
		if bad.code == "other_user" && rec.Event.GetTokenRefreshRefused().GetTokenUser() != "eve" {
			t.Fatalf("refusal of another user's token names %q", rec.Event.GetTokenRefreshRefused().GetTokenUser())
		}
	}
	// Accepted: the session now holds t2, recorded before the answer.
	r := c.refresh(signHS(t, claims("di", "phone", "t2", now, now.Add(3*time.Minute))))
	exp2 := jwt.NewNumericDate(now.Add(3 * time.Minute)).Time
	if !r.GetOk() || r.GetTokenExpiresUnixNano() != exp2.UnixNano() {
		t.Fatalf("refresh: %v; want ok until %s", r, exp2)
	}
	rec := e.waitEvent(head, "session_token_refreshed", isType(eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED))
	if rec.ID.String() != r.GetEventId() || rec.Event.GetSessionTokenRefreshed().GetToken().GetId() != "t2" {
		t.Fatalf("refresh event %v; want t2, named in the answer", rec.Event)
	}
	info, err := e.admin.GetSession(adminCtx(ctxT(t)), &hubpb.GetSessionRequest{SessionId: c.welcome.GetSessionId()})
	if err != nil || info.GetTokenId() != "t2" || info.GetTokenExpiresUnixNano() != exp2.UnixNano() {
		t.Fatalf("session info %v %v; want token t2", info, err)
	}
	// Past the first token's expiry the session lives on.
	clk.advance(2 * time.Minute)
	time.Sleep(200 * time.Millisecond) // several ticks
	if _, err := e.admin.GetSession(adminCtx(ctxT(t)), &hubpb.GetSessionRequest{SessionId: c.welcome.GetSessionId()}); err != nil {
		t.Fatalf("session after the first token's expiry: %v", err)
	}
	// Past the refreshed token's expiry it ends.
	clk.advance(time.Minute + time.Second)
	d := endedWith(t, c, hubpb.DisconnectCode_DISCONNECT_CODE_TOKEN_EXPIRED, "")
	if d.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED {
		t.Fatalf("expiry advice %v; want allowed (with a fresh token)", d.GetReconnect())
	}
	end := e.waitEnd(head, c.welcome.GetSessionId())
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_TOKEN_EXPIRED {
		t.Fatalf("recorded end %v; want token_expired", end.Event)
	}
}

// TestTokenNamesFollowTheNameRules: a token's jti is held to the name
// rules at a connect, as its sub and device are (the connect event records
// it, a revocation names it); a Refresh whose token breaks them is refused
// as invalid_token, and what it named is not recorded.
func TestTokenNamesFollowTheNameRules(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret})
	now := time.Now()
	const hostile = "j\x1b]0;owned\a"
	head := e.store.Head().Seq
	if _, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("di", "phone", hostile, now, now.Add(time.Minute)))}); codeOf(err) != codes.InvalidArgument ||
		!strings.Contains(err.Error(), "token jti holds U+001B") {
		t.Fatalf("connect with a jti holding an escape: %v; want InvalidArgument naming the jti", err)
	}
	if h := e.store.Head().Seq; h != head {
		t.Fatalf("the refused connect recorded %d events", h-head)
	}
	c, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("di", "phone", "t1", now, now.Add(time.Minute)))})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{
		signHS(t, claims("di\nroot", "phone", "t2", now, now.Add(2*time.Minute))),
		signHS(t, claims("di", "phone\u202e", "t3", now, now.Add(2*time.Minute))),
	} {
		head = e.store.Head().Seq
		r := c.refresh(tok)
		if r.GetOk() || r.GetEventId() == "" {
			t.Fatalf("refresh with a token breaking the name rules: %v; want refused and recorded", r)
		}
		rec := e.waitEvent(head, "token_refresh_refused", isType(eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED))
		b := rec.Event.GetTokenRefreshRefused()
		if b.GetCode() != "invalid_token" || b.GetTokenUser() != "" || b.GetTokenDevice() != "" || b.GetToken() != nil ||
			!strings.Contains(rec.Event.GetReason(), "holds U+") {
			t.Fatalf("recorded refusal %v (%q); want invalid_token saying why, naming nothing of the token", b, rec.Event.GetReason())
		}
	}
}

// TestRefusedRefreshesEndTheSession: a client that keeps sending tokens the
// hub refuses cannot fill the log: the fifth refusal ends its session.
func TestRefusedRefreshesEndTheSession(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret})
	now := time.Now()
	c, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("fy", "d", "f1", now, now.Add(time.Hour)))})
	if err != nil {
		t.Fatal(err)
	}
	head := e.store.Head().Seq
	for range 4 {
		if r := c.refresh("junk"); r.GetOk() {
			t.Fatal("junk refresh accepted")
		}
	}
	if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Refresh{Refresh: &hubpb.Refresh{Token: "junk"}}}); err != nil {
		t.Fatal(err)
	}
	end := e.waitEnd(head, c.welcome.GetSessionId())
	if n := len(e.events(head + 1)); n != 6 {
		t.Fatalf("%d events after the connect; want 5 refusals and the end", n)
	}
	if r := end.Event.GetReason(); r != "protocol error: 5 token refreshes refused (the last: invalid token: token is malformed: token contains an invalid number of segments)" {
		t.Fatalf("end reason %q", r)
	}
}

// TestNoReconnectBindsTheServer: after kick --no-reconnect a fresh connect
// of the same user and device, or with the kicked session's token on
// another device, is refused with the kick's reason and id and recorded,
// until the window passes; another device with another token is welcome.
func TestNoReconnectBindsTheServer(t *testing.T) {
	clk := &clock{}
	e := newEnv(t, hub.Config{JWTSecret: testSecret, Now: clk.now, NoReconnectWindow: time.Hour, RejectWindow: time.Hour})
	now := clk.now()
	tok := signHS(t, claims("gus", "", "g1", now, now.Add(3*time.Hour)))
	c, err := e.dialHello(&hubpb.Hello{Token: tok, Device: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	rep := e.kick(&hubpb.KickRequest{User: "gus", Reason: "abuse", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	if k := e.events(rep.GetSeq())[0].Event.GetKickRequested(); k.GetRefuseConnectsMs() != time.Hour.Milliseconds() {
		t.Fatalf("kick refuses connects for %d ms; want the window", k.GetRefuseConnectsMs())
	}
	endedWith(t, c, hubpb.DisconnectCode_DISCONNECT_CODE_KICKED, rep.GetEventId())
	e.waitEnd(rep.GetSeq(), c.welcome.GetSessionId())
	head := e.store.Head().Seq
	fresh := signHS(t, claims("gus", "", "g2", now, now.Add(3*time.Hour)))
	_, err = e.dialHello(&hubpb.Hello{Token: fresh, Device: "phone"})
	rj := rejectedWith(t, err, codes.PermissionDenied, "kicked", rep.GetEventId())
	if rj.GetReason() != "kicked: abuse" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("refusal %v; want the kick's reason, not allowed", rj)
	}
	e.rejectedRecord(head, "kicked", rep.GetEventId())
	// The kicked session's token, on another device.
	_, err = e.dialHello(&hubpb.Hello{Token: tok, Device: "laptop"})
	rejectedWith(t, err, codes.PermissionDenied, "kicked", rep.GetEventId())
	// Another device with another token.
	if _, err := e.dialHello(&hubpb.Hello{Token: fresh, Device: "laptop"}); err != nil {
		t.Fatalf("another device: %v", err)
	}
	// After the window.
	clk.advance(time.Hour + time.Second)
	if _, err := e.dialHello(&hubpb.Hello{Token: signHS(t, claims("gus", "", "g3", clk.now(), clk.now().Add(time.Hour))), Device: "phone"}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// TestRejectedKeepsDetailsForKickAfter: a kick with reconnect after D
// holds the device for D, and the refusal says how long is left.
func TestKickAfterHoldsForItsDelay(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("hal", "d")
	rep := e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfterMs: 60_000})
	endedWith(t, c, hubpb.DisconnectCode_DISCONNECT_CODE_KICKED, rep.GetEventId())
	_, err := e.dial("hal", "d")
	rj := rejectedWith(t, err, codes.PermissionDenied, "kicked", rep.GetEventId())
	if rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || rj.GetReconnectAfterMs() <= 0 || rj.GetReconnectAfterMs() > 60_000 {
		t.Fatalf("refusal %v; want reconnect after at most 60 s", rj)
	}
	if _, err := e.dial("hal", "other"); err != nil {
		t.Fatalf("another device: %v", err)
	}
}

// jwkFor is the JWK of a public key.
func jwkFor(t *testing.T, kid string, pub crypto.PublicKey) map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
	case ed25519.PublicKey:
		return map[string]string{"kty": "OKP", "kid": kid, "alg": "EdDSA", "use": "sig", "crv": "Ed25519", "x": b64(k)}
	}
	t.Fatalf("no JWK for %T", pub)
	return nil
}

func writeJWKS(t *testing.T, path string, keys ...map[string]string) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func signWith(t *testing.T, m jwt.SigningMethod, kid string, key any, c hubapi.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWKSKeysAndRotation: RS256 and EdDSA tokens verify against a JWK Set
// file by kid; replacing the file rotates the keys without a restart (the
// daemon notices the change); a token of a dropped key, an unknown kid, an
// HS256 token without a secret, the wrong issuer or audience are refused.
func TestJWKSKeysAndRotation(t *testing.T) {
	rsa1, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsa2, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, jwks, jwkFor(t, "rsa-1", &rsa1.PublicKey), jwkFor(t, "ed-1", edPub))
	e := &env{t: t, dir: t.TempDir(), cfg: hub.Config{JWTIssuer: "https://id.example", JWTAudience: "hub"}}
	e.daemonCfg = func(dc *daemon.Config) { dc.JWKSFile, dc.WatchInterval = jwks, 20*time.Millisecond }
	e = newEnvFrom(e)
	now := time.Now()
	mk := func(user string) hubapi.Claims {
		c := claims(user, "d", user+"-jti", now, now.Add(time.Hour))
		c.Issuer, c.Audience = "https://id.example", jwt.ClaimStrings{"hub"}
		return c
	}
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodRS256, "rsa-1", rsa1, mk("rita"))}); err != nil {
		t.Fatalf("RS256: %v", err)
	}
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodEdDSA, "ed-1", edKey, mk("eddy"))}); err != nil {
		t.Fatalf("EdDSA: %v", err)
	}
	wrongIss, wrongAud := mk("ivy"), mk("ivy")
	wrongIss.Issuer = "https://evil.example"
	wrongAud.Audience = jwt.ClaimStrings{"other-service"}
	for name, tok := range map[string]string{
		"unknown kid":    signWith(t, jwt.SigningMethodRS256, "rsa-2", rsa2, mk("ivy")),
		"wrong key":      signWith(t, jwt.SigningMethodRS256, "rsa-1", rsa2, mk("ivy")),
		"HS256":          signHS(t, mk("ivy")),
		"wrong issuer":   signWith(t, jwt.SigningMethodRS256, "rsa-1", rsa1, wrongIss),
		"wrong audience": signWith(t, jwt.SigningMethodRS256, "rsa-1", rsa1, wrongAud),
		"too long-lived": signWith(t, jwt.SigningMethodEdDSA, "ed-1", edKey, func() hubapi.Claims {
			c := mk("ivy")
			c.ExpiresAt = jwt.NewNumericDate(now.Add(25 * time.Hour))
			return c
		}()),
		"no iat":            signWith(t, jwt.SigningMethodEdDSA, "ed-1", edKey, func() hubapi.Claims { c := mk("ivy"); c.IssuedAt = nil; return c }()),
		"kid of ed, alg RS": signWith(t, jwt.SigningMethodRS256, "ed-1", rsa1, mk("ivy")),
	} {
		if _, err := e.dialHello(&hubpb.Hello{Token: tok}); codeOf(err) != codes.Unauthenticated {
			t.Errorf("%s: %v; want Unauthenticated", name, err)
		}
	}
	// Rotation: rsa-2 in, rsa-1 out, by replacing the file.
	writeJWKS(t, jwks, jwkFor(t, "rsa-2", &rsa2.PublicKey), jwkFor(t, "ed-1", edPub))
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodRS256, "rsa-2", rsa2, mk("rosa"))})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsa-2 still refused after the file changed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodRS256, "rsa-1", rsa1, mk("rita"))}); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("token of the dropped key: %v; want Unauthenticated", err)
	}
	// A broken file changes nothing: the keys in force stay.
	if err := os.WriteFile(jwks, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reload(); err == nil {
		t.Fatal("reload of a broken JWK Set succeeded")
	}
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodEdDSA, "ed-1", edKey, mk("eddy"))}); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
}

// TestPublicKeyFile: an EdDSA token verifies against a PEM public key.
func TestPublicKeyFile(t *testing.T) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509MarshalPKIX(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt.pub")
	if err := os.WriteFile(path, der, 0o644); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir()}
	e.daemonCfg = func(dc *daemon.Config) { dc.JWTPublicKeyFile = path }
	e = newEnvFrom(e)
	now := time.Now()
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodEdDSA, "", key, claims("pem", "d", "p1", now, now.Add(time.Hour)))}); err != nil {
		t.Fatalf("EdDSA with a PEM key: %v", err)
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := e.dialHello(&hubpb.Hello{Token: signWith(t, jwt.SigningMethodEdDSA, "", other, claims("pem", "d", "p2", now, now.Add(time.Hour)))}); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("another key: %v; want Unauthenticated", err)
	}
}

// x509MarshalPKIX is pub as a PEM "PUBLIC KEY".
func x509MarshalPKIX(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
