package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// maxRefusedRefreshes is how many Refresh frames a session may have
// refused (each one recorded) before it is ended for a protocol error: a
// client that keeps sending tokens the hub refuses cannot fill the log.
const maxRefusedRefreshes = 5

// Codes of token_refresh_refused (and sessionledger_token_refreshes_total's
// result label).
const (
	refreshNoTokens     = "no_tokens"     // the hub takes no tokens
	refreshInvalid      = "invalid_token" // bad signature, expired, wrong issuer or audience, too long-lived
	refreshOtherUser    = "other_user"    // sub is not the session's user
	refreshOtherDevice  = "other_device"  // the device claim is not the session's device
	refreshNotFresher   = "not_fresher"   // expires no later than the token the session holds
	refreshRevoked      = "revoked"       // a revocation covers it
	refreshNotRecorded  = "not_recorded"  // the ledger could not record it (not counted as a refusal)
	refreshAcknowledged = "ok"
)

// refresh handles a Refresh frame of sess (on the session's reader, which
// waits for it): it checks the token, records session_token_refreshed
// before the session holds the new token (write-ahead), or records the
// refusal; either way it queues a Refreshed answer. It returns an error
// only when the session must end.
func (s *Server) refresh(sess *session, raw string) error {
	ctx := sess.t.Context()
	if s.keys.Load() == nil {
		return s.refuseRefresh(ctx, sess, refreshNoTokens, "this hub does not take tokens", nil, tokenInfo{})
	}
	c, tok, err := s.verifyToken(raw)
	if err != nil {
		return s.refuseRefresh(ctx, sess, refreshInvalid, "invalid token: "+errDetail(err), nil, tokenInfo{})
	}
	switch {
	case c.Subject != sess.user:
		return s.refuseRefresh(ctx, sess, refreshOtherUser, fmt.Sprintf("the token is for user %q, not the session's", c.Subject),
			&eventpb.TokenRefreshRefused{TokenUser: c.Subject, TokenDevice: c.Device}, tok)
	case c.Device != "" && c.Device != sess.device:
		return s.refuseRefresh(ctx, sess, refreshOtherDevice, fmt.Sprintf("the token is for device %q, not the session's", c.Device),
			&eventpb.TokenRefreshRefused{TokenDevice: c.Device}, tok)
	case tok.expires.UnixNano() <= sess.tokenExp.Load():
		return s.refuseRefresh(ctx, sess, refreshNotFresher, "the token expires no later than the one the session holds", nil, tok)
	}
	// Under the user's lock, as Revoke: a revocation recorded meanwhile is
	// either seen here or marks the session once the refresh is applied.
	lock := s.userLock(sess.user)
	lock.Lock()
	var rev projections.Revocation
	var revoked bool
	s.proj.Read(func(st *projections.State) { rev, revoked = st.RevokedAt(sess.user, tok.id, tok.issued, s.cfg.Now()) })
	if revoked {
		lock.Unlock()
		return s.refuseRefresh(ctx, sess, refreshRevoked, "token revoked: "+rev.Reason, nil, tok)
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED, User: sess.user, Device: sess.device,
		Session: sess.id, Actor: sess.user,
		Body: &eventpb.Event_SessionTokenRefreshed{SessionTokenRefreshed: &eventpb.SessionTokenRefreshed{Token: tok.pb()}}}
	st, err := s.publishApplied(ctx, ev)
	lock.Unlock()
	if st == nil {
		// Not recorded: the session keeps its token, and may try again.
		s.metrics.refreshes.WithLabelValues(refreshNotRecorded).Inc()
		why := "the refresh could not be recorded: "
		if errors.Is(err, ledger.ErrOutcomeUnknown) {
			// The log may still record it; this session goes on with
			// the token it holds either way.
			why = "the refresh's outcome is unknown (the cluster's log may still record it; this session keeps its current token): "
		}
		sess.answer(&hubpb.Refreshed{Reason: why + err.Error(), TokenExpiresUnixNano: sess.tokenExp.Load()})
		return nil
	}
	// Recorded (and, unless ctx ended first, applied): the session holds
	// the new token from now on.
	sess.tokenExp.Store(tok.expires.UnixNano())
	sess.expiryDue.Store(false)
	s.metrics.refreshes.WithLabelValues(refreshAcknowledged).Inc()
	sess.answer(&hubpb.Refreshed{Ok: true, TokenExpiresUnixNano: tok.expires.UnixNano(), EventId: st[0].ID.String()})
	return nil
}

// refuseRefresh records a refused refresh of sess (body may carry what the
// token said), answers it, and ends the session once it had too many.
func (s *Server) refuseRefresh(ctx context.Context, sess *session, code, reason string, body *eventpb.TokenRefreshRefused, tok tokenInfo) error {
	if body == nil {
		body = &eventpb.TokenRefreshRefused{}
	}
	body.Code, body.Token = code, tok.pb()
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED, User: sess.user, Device: sess.device,
		Session: sess.id, Actor: sess.user, Reason: reason, Body: &eventpb.Event_TokenRefreshRefused{TokenRefreshRefused: body}}
	var id ulid.ULID
	if st, err := s.publish(ctx, ev); err == nil {
		id = st[0].ID
	} else {
		s.log.Error("could not record a refused token refresh", "session", sess.id, "err", err)
	}
	s.metrics.refreshes.WithLabelValues(code).Inc()
	ans := &hubpb.Refreshed{Reason: reason, TokenExpiresUnixNano: sess.tokenExp.Load()}
	if id != (ulid.ULID{}) {
		ans.EventId = id.String()
	}
	sess.answer(ans)
	sess.refused++
	if sess.refused >= maxRefusedRefreshes {
		return &ProtocolError{Reason: fmt.Sprintf("%d token refreshes refused (the last: %s)", sess.refused, reason)}
	}
	return nil
}

// answer queues a Refreshed frame for the session's worker to send.
func (ss *session) answer(r *hubpb.Refreshed) {
	if ss.replies.push(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Refreshed{Refreshed: r}})) {
		ss.poke()
	}
}

// errDetail is the reason an error of verifyToken gives, without the
// sentinel's words.
func errDetail(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{ErrUnauthenticated, ErrInvalid} {
		if p := sentinel.Error() + ": "; len(msg) > len(p) && msg[:len(p)] == p {
			return msg[len(p):]
		}
	}
	return msg
}

// expired reports whether sess's token expired by now (unix nanos) and
// the session was not told yet: how the node-wide ticker
// (Server.heartbeats) finds them.
func (ss *session) expired(now int64) bool {
	exp := ss.tokenExp.Load()
	return exp != 0 && exp <= now && !ss.expiryDue.Load()
}
