package hub

import (
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// maxRedeliveryScan bounds how many log records a resume reads to find
// missed notifications.
const maxRedeliveryScan = 200_000

// maxResumeChain bounds how many sessions back a resume follows the chain
// of resumes to find where it started (see resumed.floor).
const maxResumeChain = 32

// resumed is an admitted resume.
type resumed struct {
	prev string
	// lastAcked is the seq the client says it acknowledged last.
	lastAcked uint64
	// floor is the seq of the connect that started the chain of sessions
	// this one resumes: notifications before it were never addressed to
	// this client, however low lastAcked is (a client that never acked
	// sends 0).
	floor uint64
	// floorCut: the chain was longer than maxResumeChain, so floor is the
	// start of its newest part and older notifications are not redelivered.
	floorCut bool
	// rewound: the log does not hold what the client saw last (restored
	// from a backup taken before); lastAcked is then 0.
	rewound bool
}

// rewound reports whether the log no longer holds the last notification
// the client saw: a record with another id at its seq, or none (the log
// was restored from a backup taken before it). A client that does not say
// what it saw is judged by its ack alone: past the head is rewound. When
// the log cannot be read it cannot tell, and says no.
func (s *Server) rewound(ctx context.Context, r *hubpb.Resume) bool {
	head := s.hist.Head().Seq
	seq, id := r.GetLastSeenSeq(), r.GetLastSeenEventId()
	if seq == 0 || id == "" {
		return r.GetLastAckedSeq() > head
	}
	if seq > head {
		return true
	}
	got := ""
	if err := s.hist.Scan(ctx, seq, seq, func(rec *ledger.Record) error { got = rec.ID.String(); return nil }); err != nil {
		return false
	}
	return got != id
}

// admitResume is an admitted resume of prev, whose chain began at start: where
// redelivery starts, and whether the log was rewound under the client.
func (s *Server) admitResume(ctx context.Context, prev string, r *hubpb.Resume, start *ledger.Record) (resumed, error) {
	res, err := s.resumeFloor(ctx, prev, r.GetLastAckedSeq(), start)
	if err == nil && s.rewound(ctx, r) {
		// What the client acked may be another record now: redeliver from
		// the start of the chain (at least once), and tell it.
		res.lastAcked, res.rewound = 0, true
		s.log.Warn("a resuming client saw records this log does not hold (restored from a backup?): redelivering from the start of its session",
			"session", prev, "last_acked", r.GetLastAckedSeq(), "last_seen", r.GetLastSeenSeq(), "head", s.hist.Head().Seq)
	}
	return res, err
}

// checkResume decides whether user may resume session r.SessionId from
// device now, or returns a *Rejection. The previous session's history
// comes from the ledger (the projections keep only live sessions). It runs
// under the user's connect lock, which Kick and Ban also take, so no kick
// or ban of the user lands between the decision and the
// session_reconnected event.
func (s *Server) checkResume(ctx context.Context, user, device string, r *hubpb.Resume, now time.Time) (resumed, error) {
	prev := r.GetSessionId()
	if prev == "" || !hmac.Equal([]byte(s.resumeSecret(prev)), []byte(r.GetSecret())) {
		return resumed{}, refuseResume(codes.PermissionDenied, "resume secret does not match the session", eventpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	// Read what is known of an end still under way before the log: an end
	// recorded after this read is then in the log read below, so the two
	// reads cannot both miss it.
	ending, endingAt, isEnding := s.endingOf(prev)
	var start *ledger.Record
	var end *ledger.Record
	err := s.hist.BySession(ctx, prev, 0, 0, func(rec *ledger.Record) error {
		switch rec.Event.GetType() {
		case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
			if start == nil {
				start = rec
			}
		case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			if end == nil {
				end = rec
			}
		}
		return nil
	})
	if err != nil {
		return resumed{}, err
	}
	if start == nil || start.Event.GetUser() != user {
		return resumed{}, refuseResume(codes.PermissionDenied, "resume secret does not match the session", eventpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	if start.Event.GetDevice() != device {
		// A resume secret stands for one client on one device: on another
		// device it would take the first one's place and its missed
		// notifications. That device connects afresh.
		return resumed{}, refuseResume(codes.PermissionDenied, "a session can be resumed only from the device it was opened on; connect afresh", eventpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	if end == nil {
		if isEnding {
			// Told to end (a kick, a ban, a supersede) but its end is not
			// recorded yet: a client that resumes the moment it reads a
			// not_allowed Disconnect, or sees its connection aborted, gets
			// the advice its end will record.
			if err := adviceRefusal(ending.Reconnect, ending.ReconnectAfter, endingAt, ending.Reason, now); err != nil {
				return resumed{}, err
			}
		}
		// Still live (the server has not noticed the old transport is gone):
		// the new session supersedes it; see connect.
		return s.admitResume(ctx, prev, r, start)
	}
	d := end.Event.GetSessionDisconnected()
	// "After" counts from the cause (the kick or ban), which precedes the
	// Disconnect frame; the end itself is recorded after the frame went
	// out, so counting from it would refuse a client that waited exactly
	// as long as it was told.
	base := end.Time
	var cause ulid.ULID
	if copy(cause[:], d.GetCauseEventId()) == len(cause) {
		if t := ulid.Time(cause.Time()); t.Before(base) {
			base = t
		}
	}
	after := time.Duration(d.GetReconnectAfterMs()) * time.Millisecond
	if err := adviceRefusal(d.GetReconnect(), after, base, end.Event.GetReason(), now); err != nil {
		return resumed{}, err
	}
	// The window comes after the end's advice: a late resume of a session
	// ended "not allowed" must be told that, not "connect afresh".
	if now.Sub(end.Time) > s.cfg.ResumeWindow {
		return resumed{}, refuseResume(codes.FailedPrecondition, "the resume window of "+s.cfg.ResumeWindow.String()+" has passed; connect afresh", eventpb.Reconnect_RECONNECT_ALLOWED, 0)
	}
	return s.admitResume(ctx, prev, r, start)
}

// resumeFloor follows the chain of resumes back from start (prev's connect
// or reconnect event), at most maxResumeChain sessions, to the connect
// that began it.
func (s *Server) resumeFloor(ctx context.Context, prev string, lastAcked uint64, start *ledger.Record) (resumed, error) {
	res := resumed{prev: prev, lastAcked: lastAcked, floor: start.Seq}
	back := start.Event.GetSessionReconnected().GetPreviousSession()
	for hops := 0; back != ""; hops++ {
		if hops == maxResumeChain {
			res.floorCut = true
			break
		}
		var first *ledger.Record
		err := s.hist.BySession(ctx, back, 0, res.floor, func(rec *ledger.Record) error {
			switch rec.Event.GetType() {
			case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
				first = rec
				return ledger.ErrStop
			}
			return nil
		})
		if err != nil {
			return resumed{}, err
		}
		if first == nil {
			break // the log does not have it (never, in a sound log)
		}
		res.floor = first.Seq
		back = first.Event.GetSessionReconnected().GetPreviousSession()
	}
	return res, nil
}

func refuseResume(code codes.Code, reason string, rc eventpb.Reconnect, after time.Duration) error {
	return &Rejection{Code: RejectResumeRefused, Reason: reason, Reconnect: rc, ReconnectAfter: after, status: code}
}

// adviceRefusal applies the reconnect advice a session ended with (rc,
// after, counted from base) to a resume at now: nil if it may come back.
func adviceRefusal(rc eventpb.Reconnect, after time.Duration, base time.Time, reason string, now time.Time) error {
	switch rc {
	case eventpb.Reconnect_RECONNECT_NOT_ALLOWED:
		return refuseResume(codes.PermissionDenied, "the session was ended with reconnect not allowed: "+reason, eventpb.Reconnect_RECONNECT_NOT_ALLOWED, 0)
	case eventpb.Reconnect_RECONNECT_AFTER:
		at := base.Add(after)
		if now.Before(at) {
			return refuseResume(codes.FailedPrecondition, "reconnect is allowed after "+at.UTC().Format(time.RFC3339), eventpb.Reconnect_RECONNECT_AFTER, at.Sub(now))
		}
	}
	return nil
}

// endingOf reports whether session id is ending without its end recorded
// yet, with the Disconnect it gets and when its cause happened: this node
// told it why (a kick, ban or supersede it enforces, an idle timeout), or
// the projections carry a pending end for it (held by another node).
func (s *Server) endingOf(id string) (*Disconnect, time.Time, bool) {
	s.mu.Lock()
	sess := s.sessions[id]
	s.mu.Unlock()
	if sess != nil && sess.ended.Load() {
		at := sess.endAt
		if id := sess.end.EventID; id != (ulid.ULID{}) {
			at = ulid.Time(id.Time())
		}
		if at.IsZero() {
			at = s.cfg.Now()
		}
		return sess.end, at, true
	}
	var p projections.PendingEnd
	var ok bool
	s.proj.Read(func(st *projections.State) { p, ok = st.Pending(id) })
	if !ok {
		return nil, time.Time{}, false
	}
	return pendingDisconnect(p), p.At, true
}

// missedNotifications returns the notifications addressed to user, to
// session res.prev, or to everyone, after the client's last ack (and after
// the chain of sessions began) and before upTo, in order, at most
// RedeliveryLimit of them (the newest ones). They come from the ledger's
// user and session indexes and, for broadcasts, from the recent broadcasts
// the hub keeps (see broadcasts), so a resume costs a few index reads
// however long the log grew since the client's last ack. truncated says
// some of them may be left out: over RedeliveryLimit, older than the last
// maxRedeliveryScan records, before a chain of resumes longer than
// maxResumeChain, or the ledger could not be read (ok is then false and
// the resume goes on without redelivery).
func (s *Server) missedNotifications(ctx context.Context, user string, res resumed, upTo uint64) (missed []*hubpb.Notification, truncated, ok bool) {
	prev, lastAcked := res.prev, max(res.lastAcked, res.floor)
	truncated = res.floorCut && res.lastAcked < res.floor
	if upTo <= 1 || lastAcked >= upTo-1 {
		return nil, truncated, true
	}
	from := lastAcked + 1
	if upTo > maxRedeliveryScan && from < upTo-maxRedeliveryScan {
		from, truncated = upTo-maxRedeliveryScan, true
	}
	var out []*hubpb.Notification
	collect := func(target eventpb.NotificationTarget) func(*ledger.Record) error {
		return func(rec *ledger.Record) error {
			ev := rec.Event
			if ev.GetType() != eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT {
				return nil
			}
			n := ev.GetNotificationSent()
			if n.GetTarget() != target {
				return nil
			}
			switch target {
			case eventpb.NotificationTarget_NOTIFICATION_TARGET_USER:
				if ev.GetUser() != user {
					return nil
				}
			case eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION:
				if ev.GetSession() != prev {
					return nil
				}
			}
			out = append(out, redelivery(rec))
			return nil
		}
	}
	err := s.hist.ByUser(ctx, user, from, upTo-1, collect(eventpb.NotificationTarget_NOTIFICATION_TARGET_USER))
	if err == nil && prev != "" {
		err = s.hist.BySession(ctx, prev, from, upTo-1, collect(eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION))
	}
	if err == nil {
		var older uint64
		out, older = s.bcast.since(out, from, upTo)
		// Broadcasts below older are not in the ring. They matter only if
		// fewer than RedeliveryLimit of the candidates at or above it were
		// found: read them from the log.
		if older > from && countFrom(out, older) < s.cfg.RedeliveryLimit {
			err = s.hist.Scan(ctx, from, older-1, collect(eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL))
		}
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Error("reading missed notifications failed; resuming without them", "session", prev, "err", err)
		}
		return nil, true, false
	}
	slices.SortFunc(out, func(a, b *hubpb.Notification) int { return cmp.Compare(a.GetSeq(), b.GetSeq()) })
	out = slices.CompactFunc(out, func(a, b *hubpb.Notification) bool { return a.GetSeq() == b.GetSeq() })
	if len(out) > s.cfg.RedeliveryLimit {
		out, truncated = out[len(out)-s.cfg.RedeliveryLimit:], true
	}
	return out, truncated, true
}

// countFrom counts the notifications with seq >= from.
func countFrom(ns []*hubpb.Notification, from uint64) int {
	n := 0
	for _, x := range ns {
		if x.GetSeq() >= from {
			n++
		}
	}
	return n
}

func redelivery(rec *ledger.Record) *hubpb.Notification {
	n := rec.Event.GetNotificationSent()
	return &hubpb.Notification{Seq: rec.Seq, Topic: n.GetTopic(), Payload: n.GetPayload(),
		EventId: rec.ID.String(), TimeUnixNano: rec.Time.UnixNano(), Redelivered: true}
}

// broadcasts keeps the newest notify-all notifications (as many as a resume
// may redeliver), complete from seq from on: at start the hub reads them
// from the last maxRedeliveryScan records, then adds each new one as the
// projections apply it.
type broadcasts struct {
	mu    sync.Mutex
	limit int
	from  uint64                // every broadcast with seq >= from is here (unless evicted by limit)
	upTo  uint64                // last seq read at start; fanOut adds later ones
	ring  []*hubpb.Notification // oldest first
}

func (b *broadcasts) add(n *hubpb.Notification) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n.GetSeq() <= b.upTo {
		return
	}
	b.push(n)
}

func (b *broadcasts) push(n *hubpb.Notification) {
	if len(b.ring) >= b.limit {
		b.ring = slices.Delete(b.ring, 0, len(b.ring)-b.limit+1)
	}
	b.ring = append(b.ring, n)
}

// since appends to out the broadcasts with from <= seq < upTo (marked
// redelivered) and returns the seq before which it does not know them.
func (b *broadcasts) since(out []*hubpb.Notification, from, upTo uint64) ([]*hubpb.Notification, uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	i, _ := slices.BinarySearchFunc(b.ring, from, func(n *hubpb.Notification, seq uint64) int { return cmp.Compare(n.GetSeq(), seq) })
	for _, n := range b.ring[i:] {
		if n.GetSeq() >= upTo {
			break
		}
		c := proto.Clone(n).(*hubpb.Notification)
		c.Redelivered = true
		out = append(out, c)
	}
	// With the ring full, it has lost the broadcasts older than its
	// oldest entry (some of which may still be among the newest the caller
	// needs: the ring can also hold broadcasts at or after upTo).
	if len(b.ring) >= b.limit {
		return out, max(b.from, b.ring[0].GetSeq())
	}
	return out, b.from
}

// load reads the broadcasts among the last maxRedeliveryScan records of
// h. The hub loads it once its projection follows the log, so add may
// already have put newer ones in: the two are merged, in seq order, once
// each.
func (b *broadcasts) load(ctx context.Context, h History) error {
	head := h.Head().Seq
	from := uint64(1)
	if head > maxRedeliveryScan {
		from = head - maxRedeliveryScan + 1
	}
	var read []*hubpb.Notification
	if head > 0 {
		err := h.Scan(ctx, from, head, func(rec *ledger.Record) error {
			if n := rec.Event.GetNotificationSent(); n != nil && rec.Event.GetType() == eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT &&
				n.GetTarget() == eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL {
				read = append(read, redelivery(rec))
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	live := b.ring
	b.ring = nil
	b.from, b.upTo = from, head
	for _, n := range read {
		b.push(n)
	}
	for _, n := range live {
		if n.GetSeq() > head {
			b.push(n)
		}
	}
	return nil
}
