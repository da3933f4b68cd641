package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TimelineQuery names whose story to tell: one session, or every session of
// a user, within an optional window.
type TimelineQuery struct {
	Session, User string
	Since, Until  time.Time
	// Loc is the zone of the times the sentences mention (nil: UTC). A
	// Client sends its name, so through a hub Local is the hub's zone.
	Loc *time.Location
}

// TimelineEntry is one line of a story: an event told as a sentence.
type TimelineEntry struct {
	Seq     uint64
	ID      ulid.ULID
	Time    time.Time
	Type    eventpb.EventType
	User    string
	Session string
	Actor   string
	Text    string
}

// Timeline tells the story of a session or a user, in log order: connected,
// notified, kicked by whom for what, disconnected with which cause (naming
// the operator behind a kick or ban), reconnected as which session. A
// session's story also has the user-wide kicks and bans that reached it
// while it was live, and ends with the session that resumed it, if one did.
// Damaged records (undecodable, or missing from the log) are skipped, as
// Events skips them: the story is told without them and the call ends with
// a *CorruptError naming them.
func (e *Engine) Timeline(ctx context.Context, q TimelineQuery, fn func(TimelineEntry) error) error {
	if (q.Session == "") == (q.User == "") {
		return invalid("timeline needs exactly one of --session or --user")
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return invalid("--until is not after --since")
	}
	from, to, empty, err := e.seqRange(ctx, q.Since, q.Until)
	if err != nil {
		return err
	}
	t := &teller{e: e, causes: map[ulid.ULID]*ledger.Record{}, loc: orUTC(q.Loc)}
	c := &corruptions{}
	if q.User != "" {
		if empty {
			return nil
		}
		err := e.readMatching(ctx, Filter{User: q.User}, from, to, c, func(r *ledger.Record) error {
			return fn(t.entry(ctx, r))
		})
		if err != nil {
			return err
		}
		return c.err()
	}
	if empty {
		return fmt.Errorf("%w: %s (in that window)", ErrNoSuchSession, q.Session)
	}
	if err := e.sessionTimeline(ctx, q.Session, from, to, t, c, fn); err != nil {
		return err
	}
	return c.err()
}

// readMatching is read with f's field tests applied.
func (e *Engine) readMatching(ctx context.Context, f Filter, from, to uint64, c *corruptions, fn func(*ledger.Record) error) error {
	_, err := e.read(ctx, &f, from, to, c, func(r *ledger.Record) error {
		if !f.Match(r) {
			return nil
		}
		return fn(r)
	})
	return err
}

func (e *Engine) sessionTimeline(ctx context.Context, id string, from, to uint64, t *teller, c *corruptions, fn func(TimelineEntry) error) error {
	// Pass 1, the session index: who the session belongs to, and its
	// records that carry no user (the user index does not have them).
	var first *ledger.Record
	var userless []*ledger.Record
	err := e.readMatching(ctx, Filter{Session: id}, from, to, c, func(r *ledger.Record) error {
		if first == nil {
			first = r
		}
		if r.Event.GetUser() == "" {
			userless = append(userless, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if first == nil {
		if cerr := c.err(); cerr != nil {
			return fmt.Errorf("%w: %s; %w", ErrNoSuchSession, id, cerr)
		}
		return fmt.Errorf("%w: %s", ErrNoSuchSession, id)
	}
	user, device := first.Event.GetUser(), first.Event.GetDevice()
	emit := func(r *ledger.Record) error { return fn(t.entry(ctx, r)) }
	flushUserless := func(upTo uint64) error {
		for len(userless) > 0 && userless[0].Seq < upTo {
			if err := emit(userless[0]); err != nil {
				return err
			}
			userless = userless[1:]
		}
		return nil
	}
	if user == "" {
		return flushUserless(^uint64(0))
	}
	// Pass 2, the user index from the session's first record: its own
	// events, what reached it while live, and who resumed it.
	ended := false
	stop := errors.New("story told")
	err = e.readMatching(ctx, Filter{User: user}, first.Seq, to, c, func(r *ledger.Record) error {
		if err := flushUserless(r.Seq); err != nil {
			return err
		}
		ev := r.Event
		mine := ev.GetSession() == id
		switch ev.GetType() {
		case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			if mine {
				ended = true
			}
		case eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
			if ev.GetSessionReconnected().GetPreviousSession() == id {
				if err := emit(r); err != nil {
					return err
				}
				return stop
			}
			mine = mine || !ended && slices.Contains(ev.GetSessionReconnected().GetSupersedes(), id)
		case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
			mine = mine || !ended && slices.Contains(ev.GetSessionConnected().GetSupersedes(), id)
		case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
			switch ev.GetKickRequested().GetTarget() {
			case eventpb.KickTarget_KICK_TARGET_USER:
				mine = mine || !ended
			case eventpb.KickTarget_KICK_TARGET_USER_DEVICE:
				mine = mine || !ended && ev.GetDevice() == device
			}
		case eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
			mine = mine || !ended
		case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT:
			mine = mine || !ended && ev.GetNotificationSent().GetTarget() == eventpb.NotificationTarget_NOTIFICATION_TARGET_USER
		}
		if !mine {
			return nil
		}
		return emit(r)
	})
	if errors.Is(err, stop) {
		return nil
	}
	if err != nil {
		return err
	}
	return flushUserless(^uint64(0))
}

// teller turns records into sentences, looking up the kick or ban behind a
// disconnect (once per id).
type teller struct {
	e      *Engine
	causes map[ulid.ULID]*ledger.Record
	loc    *time.Location
}

func (t *teller) entry(ctx context.Context, r *ledger.Record) TimelineEntry {
	ev := r.Event
	return TimelineEntry{
		Seq: r.Seq, ID: r.ID, Time: r.Time, Type: ev.GetType(),
		User: ev.GetUser(), Session: ev.GetSession(), Actor: ev.GetActor(),
		Text: t.describe(ctx, r),
	}
}

func (t *teller) cause(ctx context.Context, id ulid.ULID) *ledger.Record {
	if r, ok := t.causes[id]; ok {
		return r
	}
	r, _ := t.e.RecordByID(ctx, id)
	t.causes[id] = r
	return r
}

func (t *teller) describe(ctx context.Context, r *ledger.Record) string {
	ev := r.Event
	var b strings.Builder
	user, sess, actor := ev.GetUser(), ev.GetSession(), ev.GetActor()
	reason := ""
	if ev.GetReason() != "" {
		reason = fmt.Sprintf(": %q", ev.GetReason())
	}
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
		c := ev.GetSessionConnected()
		fmt.Fprintf(&b, "session %s connected: %s%s%s%s%s", sess, user, on(ev.GetDevice()), from(c.GetRemoteAddr()), over(c.GetTransport()), via(ev.GetNode()))
		if len(c.GetSupersedes()) > 0 {
			fmt.Fprintf(&b, ", superseding %s", strings.Join(c.GetSupersedes(), ", "))
		}
	case eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		c := ev.GetSessionReconnected()
		fmt.Fprintf(&b, "session %s reconnected, resuming session %s (last acked seq %d): %s%s%s%s%s",
			sess, c.GetPreviousSession(), c.GetLastAckedSeq(), user, on(ev.GetDevice()), from(c.GetRemoteAddr()), over(c.GetTransport()), via(ev.GetNode()))
		if len(c.GetSupersedes()) > 0 {
			fmt.Fprintf(&b, ", superseding %s", strings.Join(c.GetSupersedes(), ", "))
		}
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT:
		n := ev.GetNotificationSent()
		target := "everyone"
		switch n.GetTarget() {
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION:
			target = "session " + sess
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_USER:
			target = "user " + user
		}
		fmt.Fprintf(&b, "notified %s (topic %q, %d bytes, notification seq %d)%s", target, n.GetTopic(), len(n.GetPayload()), r.Seq, by(actor))
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		k := ev.GetKickRequested()
		switch k.GetTarget() {
		case eventpb.KickTarget_KICK_TARGET_SESSION:
			fmt.Fprintf(&b, "kick of session %s", sess)
		case eventpb.KickTarget_KICK_TARGET_USER_DEVICE:
			fmt.Fprintf(&b, "kick of %s's sessions on device %s", user, ev.GetDevice())
		default:
			fmt.Fprintf(&b, "kick of every session of %s", user)
		}
		fmt.Fprintf(&b, " ordered%s%s", by(actor), reason)
		var opts []string
		if k.GetMode() != 0 {
			opts = append(opts, enumName(k.GetMode().String(), "KICK_MODE_"))
		}
		if rc := ReconnectText(k.GetReconnect(), k.GetReconnectAfterMs()); rc != "" {
			opts = append(opts, "reconnect "+rc)
		}
		if len(opts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(opts, ", "))
		}
	case eventpb.EventType_EVENT_TYPE_USER_BANNED:
		fmt.Fprintf(&b, "%s banned%s", user, by(actor))
		if u := ev.GetUserBanned().GetUntilUnixNano(); u != 0 {
			until := time.Unix(0, u).In(t.loc)
			fmt.Fprintf(&b, " until %s (%s)", until.Format(time.RFC3339), until.Sub(r.Time).Round(time.Second))
		} else {
			b.WriteString(" with no expiry")
		}
		b.WriteString(reason)
	case eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		fmt.Fprintf(&b, "%s unbanned%s%s", user, by(actor), reason)
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		d := ev.GetSessionDisconnected()
		fmt.Fprintf(&b, "session %s ended: ", sess)
		said := "" // the reason of the kick or ban behind it, once told
		switch d.GetCause() {
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED:
			b.WriteString("closed by the client")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED:
			b.WriteString(CauseName(d.GetCause()))
			var id ulid.ULID
			if len(d.GetCauseEventId()) == len(id) {
				copy(id[:], d.GetCauseEventId())
				if c := t.cause(ctx, id); c != nil && c.Event != nil {
					what := "kick"
					if c.Event.GetType() == eventpb.EventType_EVENT_TYPE_USER_BANNED {
						what = "ban"
					}
					fmt.Fprintf(&b, "%s", by(c.Event.GetActor()))
					if said = c.Event.GetReason(); said != "" {
						fmt.Fprintf(&b, " for %q", said)
					}
					fmt.Fprintf(&b, " (%s at seq %d)", what, c.Seq)
				} else {
					fmt.Fprintf(&b, " (event %s, not found in this log)", id)
				}
			}
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED:
			b.WriteString("superseded")
			if d.GetSupersededBy() != "" {
				fmt.Fprintf(&b, " by session %s (a newer login)", d.GetSupersededBy())
			}
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT:
			b.WriteString("idle timeout (no heartbeat)")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN:
			b.WriteString("server shutdown")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER:
			b.WriteString("slow consumer (its notifications piled up)")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST:
			b.WriteString("lost (found live after a restart of node " + ev.GetNode() + ")")
		default:
			b.WriteString(CauseName(d.GetCause()))
		}
		if ev.GetReason() != said {
			b.WriteString(reason) // what the hub recorded, whatever the cause
		}
		if rc := ReconnectText(d.GetReconnect(), d.GetReconnectAfterMs()); rc != "" {
			fmt.Fprintf(&b, "; reconnect %s", rc)
		}
	case eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED:
		c := ev.GetConnectRejected()
		fmt.Fprintf(&b, "connect of %s%s%s rejected", user, on(ev.GetDevice()), from(c.GetRemoteAddr()))
		var parts []string
		if c.GetCode() != "" {
			parts = append(parts, c.GetCode())
		}
		if c.GetCount() > 1 {
			parts = append(parts, fmt.Sprintf("%d attempts", c.GetCount()))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		}
		b.WriteString(reason)
	default:
		fmt.Fprintf(&b, "%s%s%s", TypeName(ev.GetType()), by(actor), reason)
	}
	return b.String()
}

func on(device string) string {
	if device == "" {
		return ""
	}
	return " on device " + device
}

func from(addr string) string {
	if addr == "" {
		return ""
	}
	return " from " + addr
}

func over(transport string) string {
	if transport == "" {
		return ""
	}
	return " over " + transport
}

func via(node string) string {
	if node == "" {
		return ""
	}
	return " via node " + node
}

func by(actor string) string {
	if actor == "" {
		return ""
	}
	return " by " + actor
}

// RecordByID finds the record with the given ULID. Ids order like seqs and
// carry their millisecond, so this is a binary search over time and a short
// scan. It returns ledger.ErrNotFound when no record has that id.
func (e *Engine) RecordByID(ctx context.Context, id ulid.ULID) (*ledger.Record, error) {
	ms := time.UnixMilli(int64(id.Time()))
	seq, err := e.store.SeqAtTime(ms.Add(-time.Second))
	if err != nil {
		return nil, err
	}
	var found *ledger.Record
	err = e.store.Scan(ctx, seq, 0, func(r *ledger.Record) error {
		switch r.ID.Compare(id) {
		case 0:
			found = r
			return ledger.ErrStop
		case 1:
			return ledger.ErrStop
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, fmt.Errorf("%w: id %s", ledger.ErrNotFound, id)
	}
	return found, nil
}
