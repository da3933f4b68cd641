package client

import (
	"context"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// minRefreshLead is how close to its expiry a token is too old to connect
// with, when a token source can give a fresh one.
const minRefreshLead = 5 * time.Second

// unixTime is n Unix nanoseconds, zero for 0.
func unixTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// helloToken returns the token for the next Hello: the latest, or with a
// token source a fresh one when there is none yet, or the latest has
// expired or is about to.
func (c *Client) helloToken(ctx context.Context) (string, error) {
	c.mu.Lock()
	tok, exp := c.token, c.sess.TokenExpires
	c.mu.Unlock()
	if c.cfg.tokenSource == nil || tok != "" && (exp.IsZero() || time.Until(exp) > minRefreshLead) {
		return tok, nil
	}
	fresh, err := c.cfg.tokenSource(ctx)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	c.token = fresh
	c.mu.Unlock()
	return fresh, nil
}

// scheduleRefresh arms ls's refresh: ahead of the token's expiry (a fifth
// of what was left of its life when the client learned of it, at least a
// second, at most five minutes), or with retry halfway to the expiry. It
// does nothing without a token source, a known expiry, or once ls ended.
func (c *Client) scheduleRefresh(ls *stream, retry bool) {
	if c.cfg.tokenSource == nil {
		return
	}
	ls.refreshMu.Lock()
	defer ls.refreshMu.Unlock()
	if ls.ctx.Err() != nil || ls.tokenExp.IsZero() {
		return
	}
	left := time.Until(ls.tokenExp)
	if left <= 0 {
		return // the server ends the session; a reconnect gets a fresh token
	}
	wait := left / 2
	if !retry {
		lead := min(max(ls.tokenExp.Sub(ls.tokenKnown)/5, time.Second), 5*time.Minute)
		wait = max(left-lead, 0)
	}
	if ls.refreshTimer != nil {
		ls.refreshTimer.Stop()
	}
	ls.refreshTimer = time.AfterFunc(wait, func() { c.refreshNow(ls) })
}

// refreshNow asks the token source for a fresh token and hands it to ls's
// writer, which sends it as a Refresh frame; the reader sees the answer.
// It runs on the timer's goroutine, which ends when the source returns
// (its ctx ends with the stream or at the token's expiry).
func (c *Client) refreshNow(ls *stream) {
	ls.refreshMu.Lock()
	exp := ls.tokenExp
	ls.refreshMu.Unlock()
	if ls.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithDeadline(ls.ctx, exp)
	tok, err := c.cfg.tokenSource(ctx)
	cancel()
	if ls.ctx.Err() != nil {
		return
	}
	if err != nil {
		c.cfg.logger.Warn("token source failed; trying again halfway to the expiry", "session", ls.session, "expires", exp, "err", err)
		c.scheduleRefresh(ls, true)
		return
	}
	c.mu.Lock()
	c.token = tok
	c.mu.Unlock()
	ls.refreshTok.Store(&tok)
	ls.poke()
}

// refreshed takes the server's answer to a Refresh: the new expiry, and
// the next refresh scheduled ahead of it; or, refused, a retry.
func (c *Client) refreshed(ls *stream, r *hubpb.Refreshed) {
	if r.GetOk() {
		ls.refreshMu.Lock()
		ls.tokenExp, ls.tokenKnown = unixTime(r.GetTokenExpiresUnixNano()), time.Now()
		ls.refreshMu.Unlock()
		c.mu.Lock()
		if c.sess.ID == ls.session {
			c.sess.TokenExpires = unixTime(r.GetTokenExpiresUnixNano())
		}
		c.mu.Unlock()
		c.cfg.logger.Info("hub session token refreshed", "session", ls.session, "expires", unixTime(r.GetTokenExpiresUnixNano()), "event_id", r.GetEventId())
	} else {
		c.cfg.logger.Warn("hub refused the fresh token; trying again halfway to the expiry", "session", ls.session, "reason", r.GetReason(), "event_id", r.GetEventId())
	}
	c.scheduleRefresh(ls, !r.GetOk())
}

// stopRefresh stops ls's refresh timer (a refresh under way ends with the
// stream's context).
func (ls *stream) stopRefresh() {
	ls.refreshMu.Lock()
	defer ls.refreshMu.Unlock()
	if ls.refreshTimer != nil {
		ls.refreshTimer.Stop()
	}
}
