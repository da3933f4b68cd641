package client_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var testSecret = []byte("client-test-jwt-secret-0123456789")

// mint makes a token for user on device living ttl, with jti id.
func mint(t *testing.T, user, device, id string, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	c := hubapi.Claims{Device: device, RegisteredClaims: jwt.RegisteredClaims{ID: id, Subject: user,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl))}}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTokenRefreshKeepsSessionAlive: with a token source the client sends
// fresh tokens ahead of each expiry, and the one session outlives several
// short-lived tokens; each refresh is in the ledger.
func TestTokenRefreshKeepsSessionAlive(t *testing.T) {
	h := newHub(t, hub.Config{JWTSecret: testSecret, HeartbeatInterval: 100 * time.Millisecond})
	var minted atomic.Int32
	source := func(ctx context.Context) (string, error) {
		n := minted.Add(1)
		return mint(t, "rae", "phone", "r"+string(rune('0'+n)), 2*time.Second), nil
	}
	c, err := client.Dial(ctxTimeout(t), h.addr, client.WithTokenRefresh(source), client.WithConn(h.conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := c.Session()
	if first.TokenExpires.IsZero() {
		t.Fatal("the session does not know its token's expiry")
	}
	// Two refreshes at least: past the expiry of the first two tokens.
	h.waitEvent(t, 0, "second refresh", func(*ledger.Record) bool {
		return h.count(t, 0, eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED) >= 2
	})
	time.Sleep(300 * time.Millisecond)
	if s := c.Session(); s.ID != first.ID || !s.TokenExpires.After(first.TokenExpires) {
		t.Fatalf("session %s until %s; want %s, until later than %s", s.ID, s.TokenExpires, first.ID, first.TokenExpires)
	}
	if n := h.count(t, 0, eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED); n != 0 {
		t.Fatalf("%d sessions ended; want none", n)
	}
}

// TestTokenExpiredWithoutSource: without a token source the session ends
// with CauseTokenExpired, and the client, whose token is now expired,
// cannot come back.
func TestTokenExpiredWithoutSource(t *testing.T) {
	h := newHub(t, hub.Config{JWTSecret: testSecret, HeartbeatInterval: 100 * time.Millisecond})
	c, err := client.Dial(ctxTimeout(t), h.addr, client.WithToken(mint(t, "sol", "d", "s1", time.Second)), client.WithConn(h.conn),
		client.WithSleep(func(context.Context, time.Duration) error { return nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ends []client.Disconnect
	for d := range c.Disconnects() {
		ends = append(ends, d)
	}
	if len(ends) < 2 || ends[0].Cause != client.CauseTokenExpired || ends[len(ends)-1].RejectCode != "unauthenticated" {
		t.Fatalf("ends %+v; want token_expired, then the expired token refused", ends)
	}
}

// TestRevokedClientStops: a revoked token ends the client with
// CauseRevoked, naming the revocation, and it does not come back.
func TestRevokedClientStops(t *testing.T) {
	h := newHub(t, hub.Config{JWTSecret: testSecret})
	c, err := client.Dial(ctxTimeout(t), h.addr, client.WithToken(mint(t, "val", "d", "v1", time.Hour)), client.WithConn(h.conn))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := adminCtx()
	defer cancel()
	rep, err := h.admin.Revoke(ctx, &hubpb.RevokeRequest{TokenId: "v1", Reason: "lost laptop"})
	if err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	d, ok := c.Err().(*client.Disconnect)
	if !ok || d.Cause != client.CauseRevoked || d.EventID != rep.GetEventId() || d.WillReconnect {
		t.Fatalf("end %v; want revoked by %s, not reconnecting", c.Err(), rep.GetEventId())
	}
}
