package hub

import (
	"context"
	"crypto/hmac"
	"errors"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// maxRedeliveryScan bounds how many log records a resume reads to find
// missed notifications.
const maxRedeliveryScan = 200_000

// checkResume decides whether user may resume session r.SessionId now. It
// returns the previous session id and the client's last acked seq, or a
// *Rejection. The previous session's history comes from the ledger (the
// projections keep only live sessions).
func (s *Server) checkResume(ctx context.Context, user string, r *hubpb.Resume, now time.Time) (string, uint64, error) {
	refuse := func(code codes.Code, reason string, rc hubpb.Reconnect, after time.Duration) error {
		return &Rejection{Code: "resume_refused", Reason: reason, Reconnect: rc, ReconnectAfter: after, status: code}
	}
	prev := r.GetSessionId()
	if prev == "" || !hmac.Equal([]byte(s.resumeSecret(prev)), []byte(r.GetSecret())) {
		return "", 0, refuse(codes.PermissionDenied, "resume secret does not match the session", hubpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	var started bool
	var owner string
	var end *ledger.Record
	err := s.store.BySession(ctx, prev, 0, 0, func(rec *ledger.Record) error {
		switch rec.Event.GetType() {
		case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
			started, owner = true, rec.Event.GetUser()
		case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			if end == nil {
				end = rec
			}
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	if !started || owner != user {
		return "", 0, refuse(codes.PermissionDenied, "resume secret does not match the session", hubpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	if end == nil {
		// Still live (the server has not noticed the old transport is gone):
		// the new session supersedes it; see connect.
		return prev, r.GetLastAckedSeq(), nil
	}
	d := end.Event.GetSessionDisconnected()
	if now.Sub(end.Time) > s.cfg.ResumeWindow {
		return "", 0, refuse(codes.FailedPrecondition, "the resume window of "+s.cfg.ResumeWindow.String()+" has passed; connect afresh", hubpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	switch d.GetReconnect() {
	case eventpb.Reconnect_RECONNECT_NOT_ALLOWED:
		return "", 0, refuse(codes.PermissionDenied, "the session was ended with reconnect not allowed: "+end.Event.GetReason(), hubpb.Reconnect_RECONNECT_NOT_ALLOWED, 0)
	case eventpb.Reconnect_RECONNECT_AFTER:
		at := end.Time.Add(time.Duration(d.GetReconnectAfterMs()) * time.Millisecond)
		if now.Before(at) {
			return "", 0, refuse(codes.FailedPrecondition, "reconnect is allowed after "+at.UTC().Format(time.RFC3339), hubpb.Reconnect_RECONNECT_AFTER, at.Sub(now))
		}
	}
	return prev, r.GetLastAckedSeq(), nil
}

// missedNotifications reads from the ledger the notifications addressed to
// user, to session prev, or to everyone, with lastAcked < seq < upTo, in
// order, at most RedeliveryLimit of them (the newest ones).
func (s *Server) missedNotifications(ctx context.Context, user, prev string, lastAcked, upTo uint64) []*hubpb.Notification {
	from := lastAcked + 1
	if upTo > maxRedeliveryScan && from < upTo-maxRedeliveryScan {
		from = upTo - maxRedeliveryScan
	}
	var out []*hubpb.Notification
	err := s.store.Scan(ctx, from, upTo-1, func(rec *ledger.Record) error {
		ev := rec.Event
		if ev.GetType() != eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT {
			return nil
		}
		n := ev.GetNotificationSent()
		switch n.GetTarget() {
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL:
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_USER:
			if ev.GetUser() != user {
				return nil
			}
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION:
			if ev.GetSession() != prev {
				return nil
			}
		default:
			return nil
		}
		out = append(out, &hubpb.Notification{Seq: rec.Seq, Topic: n.GetTopic(), Payload: n.GetPayload(),
			EventId: rec.ID.String(), TimeUnixNano: rec.Time.UnixNano(), Redelivered: true})
		if len(out) > s.cfg.RedeliveryLimit {
			out = out[1:]
		}
		return nil
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Error("reading missed notifications failed; resuming without them", "session", prev, "err", err)
	}
	return out
}
