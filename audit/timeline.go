package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
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
// a *CorruptError naming them. A read that fails otherwise (ctx ends, the
// ledger closes) ends the story with that error, before the sentence that
// needed the read.
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
	c := &corruptions{}
	t := &teller{e: e, c: c, causes: map[ulid.ULID]*ledger.Record{}, loc: orUTC(q.Loc)}
	if q.User != "" {
		if empty {
			return nil
		}
		err := e.readMatching(ctx, Filter{User: q.User}, from, to, c, func(r *ledger.Record) error {
			return t.emit(ctx, r, fn)
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
	emit := func(r *ledger.Record) error { return t.emit(ctx, r, fn) }
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
		case eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED, eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
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
// disconnect (once per id), and following the ban state of the story's
// user for the bans it tells. The damage its own reads meet goes to c, the
// story's.
type teller struct {
	e      *Engine
	c      *corruptions
	causes map[ulid.ULID]*ledger.Record
	loc    *time.Location
	// bans holds the bans and unbans of banUser up to seq bansNext-1
	// (nil until a ban is told).
	bans     *projections.State
	banUser  string
	bansNext uint64
}

// emit tells r and hands the entry to fn.
func (t *teller) emit(ctx context.Context, r *ledger.Record, fn func(TimelineEntry) error) error {
	e, err := t.entry(ctx, r)
	if err != nil {
		return err
	}
	return fn(e)
}

func (t *teller) entry(ctx context.Context, r *ledger.Record) (TimelineEntry, error) {
	ev := r.Event
	text, err := t.describe(ctx, r)
	if err != nil {
		return TimelineEntry{}, fmt.Errorf("timeline at seq %d: %w", r.Seq, err)
	}
	return TimelineEntry{
		Seq: r.Seq, ID: r.ID, Time: r.Time, Type: ev.GetType(),
		User: ev.GetUser(), Session: ev.GetSession(), Actor: ev.GetActor(),
		Text: text,
	}, nil
}

// banKept reports, for a user_banned record, the earlier ban that stayed in
// force because this one ended no later (ok false when this ban took
// effect).
//
// A user's ban state is a fold of that user's bans and unbans alone: the
// reducer's rules (the later end wins, an unban lifts, expiry at Until)
// read nothing else, and record times never go back, so projections.State
// fed only those records answers BanAt for the user as the full state at
// the record would. banKept feeds them in as the story goes, reading the
// user's index from where the ban told before left off: a story with many
// bans reads the user's bans once, where rebuilding the state at each ban
// (a snapshot and a replay) made a story's cost grow with bans times the
// log. Damage the read meets is skipped and noted in the story's c, as its
// own reads do; any other error is returned.
func (t *teller) banKept(ctx context.Context, r *ledger.Record) (projections.Ban, bool, error) {
	user := r.Event.GetUser()
	if user == "" {
		return projections.Ban{}, false, nil // the reducer ignores it too
	}
	if t.bans == nil || user != t.banUser || r.Seq < t.bansNext {
		t.bans, t.banUser, t.bansNext = projections.New(), user, 1
	}
	// The story's reads report progress; this one goes back over seqs
	// already reported, so it reports none.
	f := Filter{User: user, Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_USER_BANNED, eventpb.EventType_EVENT_TYPE_USER_UNBANNED}}
	err := t.e.readMatching(WithProgress(ctx, nil), f, t.bansNext, r.Seq, t.c, func(b *ledger.Record) error {
		t.bans.Apply(b)
		return nil
	})
	if err != nil {
		t.bans = nil // partly fed: start again if asked again
		return projections.Ban{}, false, fmt.Errorf("ban state of %s: %w", termtext.Field(user), err)
	}
	t.bansNext = r.Seq + 1
	b, ok := t.bans.BanAt(user, r.Time)
	if !ok || b.EventID == r.ID {
		return projections.Ban{}, false, nil
	}
	return b, true, nil
}

// cause is the record with id, or nil when the log does not have it; the
// lookup skips damage, noting it in c.
func (t *teller) cause(ctx context.Context, id ulid.ULID) (*ledger.Record, error) {
	if r, ok := t.causes[id]; ok {
		return r, nil
	}
	r, err := t.e.findByID(ctx, id, t.c)
	if err != nil {
		return nil, fmt.Errorf("look up event %s: %w", id, err)
	}
	t.causes[id] = r
	return r, nil
}

func (t *teller) describe(ctx context.Context, r *ledger.Record) (string, error) {
	ev := r.Event
	var b strings.Builder
	// Every name in a sentence is escaped (quoted unless a plain word):
	// sentences are printed on terminals, and names are chosen by clients
	// and operators. Reasons and topics are always quoted.
	user, sess, actor := termtext.Field(ev.GetUser()), termtext.Field(ev.GetSession()), ev.GetActor()
	reason := ""
	if ev.GetReason() != "" {
		reason = fmt.Sprintf(": %q", ev.GetReason())
	}
	switch ev.GetType() {
	case eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
		c := ev.GetSessionConnected()
		fmt.Fprintf(&b, "session %s connected: %s%s%s%s%s%s", sess, user, on(ev.GetDevice()), from(c.GetRemoteAddr()), over(c.GetTransport()), via(ev.GetNode()), t.withToken(c.GetToken()))
		if len(c.GetSupersedes()) > 0 {
			fmt.Fprintf(&b, ", superseding %s", fields(c.GetSupersedes()))
		}
		b.WriteString(policyNote(c.GetPolicy()))
	case eventpb.EventType_EVENT_TYPE_SESSION_RECONNECTED:
		c := ev.GetSessionReconnected()
		fmt.Fprintf(&b, "session %s reconnected, resuming session %s (last acked seq %d): %s%s%s%s%s%s",
			sess, termtext.Field(c.GetPreviousSession()), c.GetLastAckedSeq(), user, on(ev.GetDevice()), from(c.GetRemoteAddr()), over(c.GetTransport()), via(ev.GetNode()), t.withToken(c.GetToken()))
		if len(c.GetSupersedes()) > 0 {
			fmt.Fprintf(&b, ", superseding %s", fields(c.GetSupersedes()))
		}
		b.WriteString(policyNote(c.GetPolicy()))
	case eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT:
		n := ev.GetNotificationSent()
		target := "everyone"
		switch n.GetTarget() {
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION:
			target = "session " + sess
		case eventpb.NotificationTarget_NOTIFICATION_TARGET_USER:
			target = "user " + user
		}
		fmt.Fprintf(&b, "notified %s (topic %q, %s, notification seq %d)%s", target, n.GetTopic(), hubapi.PayloadText(n.GetPayload()), r.Seq, by(actor))
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		k := ev.GetKickRequested()
		switch k.GetTarget() {
		case eventpb.KickTarget_KICK_TARGET_SESSION:
			fmt.Fprintf(&b, "kick of session %s", sess)
		case eventpb.KickTarget_KICK_TARGET_USER_DEVICE:
			fmt.Fprintf(&b, "kick of %s's sessions on device %s", user, termtext.Field(ev.GetDevice()))
		default:
			fmt.Fprintf(&b, "kick of every session of %s", user)
		}
		switch {
		case k.GetExceptSession() != "":
			fmt.Fprintf(&b, " except session %s", termtext.Field(k.GetExceptSession()))
		case k.GetExceptDevice() != "":
			fmt.Fprintf(&b, " except those on device %s", termtext.Field(k.GetExceptDevice()))
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
		kept, ok, err := t.banKept(ctx, r)
		if err != nil {
			return "", err
		}
		if ok {
			// A ban that ends no later than the one in force changes
			// nothing (the later end wins): the sentence must not read as
			// if this ban were in force.
			fmt.Fprintf(&b, "; changed nothing: the ban in force (seq %d) ends later and was kept, ", kept.Seq)
			if kept.Until.IsZero() {
				b.WriteString("with no expiry")
			} else {
				b.WriteString("until " + kept.Until.In(t.loc).Format(time.RFC3339))
			}
		}
	case eventpb.EventType_EVENT_TYPE_USER_UNBANNED:
		fmt.Fprintf(&b, "%s unbanned%s%s", user, by(actor), reason)
	case eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
		d := ev.GetSessionDisconnected()
		fmt.Fprintf(&b, "session %s ended: ", sess)
		said := "" // the reason of the kick or ban behind it, once told
		switch d.GetCause() {
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED:
			b.WriteString("closed by the client")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, eventpb.DisconnectCause_DISCONNECT_CAUSE_BANNED, eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED:
			b.WriteString(CauseName(d.GetCause()))
			if d.GetCause() == eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED {
				b.WriteString(" (its token was revoked)")
			}
			var id ulid.ULID
			if len(d.GetCauseEventId()) == len(id) {
				copy(id[:], d.GetCauseEventId())
				c, err := t.cause(ctx, id)
				if err != nil {
					return "", err
				}
				if c != nil && c.Event != nil {
					what := "kick"
					switch c.Event.GetType() {
					case eventpb.EventType_EVENT_TYPE_USER_BANNED:
						what = "ban"
					case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
						what = "revocation"
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
				fmt.Fprintf(&b, " by session %s (a newer login)", termtext.Field(d.GetSupersededBy()))
			}
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_IDLE_TIMEOUT:
			b.WriteString("idle timeout (no heartbeat)")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN:
			b.WriteString("server shutdown")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER:
			b.WriteString("slow consumer (its notifications piled up)")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST:
			if detector, ok := strings.CutPrefix(actor, "node:"); ok && detector != ev.GetNode() {
				b.WriteString("lost (node " + termtext.Field(ev.GetNode()) + " stopped; recorded by node " + termtext.Field(detector) + ")")
			} else {
				b.WriteString("lost (found live after a restart of node " + termtext.Field(ev.GetNode()) + ")")
			}
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_TOKEN_EXPIRED:
			b.WriteString("token expired (no fresh token sent)")
		case eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED:
			b.WriteString("drained (its node moved its sessions to other nodes)")
		default:
			b.WriteString(CauseName(d.GetCause()))
		}
		if ev.GetReason() != said {
			b.WriteString(reason) // what the hub recorded, whatever the cause
		}
		if rc := ReconnectText(d.GetReconnect(), d.GetReconnectAfterMs()); rc != "" {
			fmt.Fprintf(&b, "; reconnect %s", rc)
		}
	case eventpb.EventType_EVENT_TYPE_NODE_DRAINED:
		d := ev.GetNodeDrained()
		fmt.Fprintf(&b, "node %s drained%s%s (its sessions told to reconnect elsewhere within %s)", termtext.Field(d.GetNode()), by(actor), reason,
			(time.Duration(d.GetWindowMs()) * time.Millisecond).String())
	case eventpb.EventType_EVENT_TYPE_CONNECT_REJECTED:
		c := ev.GetConnectRejected()
		fmt.Fprintf(&b, "connect of %s%s%s rejected", user, on(ev.GetDevice()), from(c.GetRemoteAddr()))
		var parts []string
		if c.GetCode() != "" {
			parts = append(parts, termtext.Field(c.GetCode()))
		}
		if c.GetCount() > 1 {
			parts = append(parts, fmt.Sprintf("%d attempts", c.GetCount()))
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(parts, ", "))
		}
		b.WriteString(reason)
		ref, err := t.causeRef(ctx, c.GetCauseEventId())
		if err != nil {
			return "", err
		}
		b.WriteString(ref)
	case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
		v := ev.GetTokenRevoked()
		if v.GetTokenId() != "" {
			fmt.Fprintf(&b, "token %s", termtext.Field(v.GetTokenId()))
			if user != "" {
				fmt.Fprintf(&b, " (held by %s)", user)
			}
		} else {
			fmt.Fprintf(&b, "%s's tokens issued before %s", user, time.Unix(0, v.GetIssuedBeforeUnixNano()).In(t.loc).Format(time.RFC3339))
		}
		fmt.Fprintf(&b, " revoked%s%s", by(actor), reason)
		if u := v.GetUntilUnixNano(); u != 0 {
			fmt.Fprintf(&b, " (in force until %s)", time.Unix(0, u).In(t.loc).Format(time.RFC3339))
		}
	case eventpb.EventType_EVENT_TYPE_SESSION_TOKEN_REFRESHED:
		fmt.Fprintf(&b, "session %s refreshed its token%s", sess, t.withToken(ev.GetSessionTokenRefreshed().GetToken()))
	case eventpb.EventType_EVENT_TYPE_TOKEN_REFRESH_REFUSED:
		r := ev.GetTokenRefreshRefused()
		fmt.Fprintf(&b, "token refresh of session %s refused (%s)", sess, termtext.Field(r.GetCode()))
		if r.GetTokenUser() != "" {
			fmt.Fprintf(&b, ", the token was for user %s", termtext.Field(r.GetTokenUser()))
		}
		b.WriteString(reason)
	case eventpb.EventType_EVENT_TYPE_ADMIN_CALL_REFUSED:
		a := ev.GetAdminCallRefused()
		fmt.Fprintf(&b, "admin call %s refused%s (role %s, needs %s", termtext.Field(a.GetMethod()), by(actor), termtext.Field(a.GetRole()), termtext.Field(a.GetNeeds()))
		if a.GetCount() > 1 {
			fmt.Fprintf(&b, ", %d calls", a.GetCount())
		}
		b.WriteString(")")
		b.WriteString(from(a.GetRemoteAddr()))
	default:
		fmt.Fprintf(&b, "%s%s%s", TypeName(ev.GetType()), by(actor), reason)
	}
	return b.String(), nil
}

// withToken says which token a session holds: ", token ID expiring T".
func (t *teller) withToken(c *eventpb.ClientToken) string {
	if c == nil {
		return ""
	}
	s := ", token "
	if c.GetId() != "" {
		s += termtext.Field(c.GetId()) + " "
	}
	if e := c.GetExpiresUnixNano(); e != 0 {
		s += "expiring " + time.Unix(0, e).In(t.loc).Format(time.RFC3339)
	}
	return strings.TrimRight(s, " ")
}

// causeRef names the event behind a refusal: "; refused by the kick at
// seq N by ops" or the revocation.
func (t *teller) causeRef(ctx context.Context, raw []byte) (string, error) {
	var id ulid.ULID
	if len(raw) != len(id) {
		return "", nil
	}
	copy(id[:], raw)
	c, err := t.cause(ctx, id)
	if err != nil {
		return "", err
	}
	if c == nil || c.Event == nil {
		return fmt.Sprintf(" (event %s, not found in this log)", id), nil
	}
	what := TypeName(c.Event.GetType())
	switch c.Event.GetType() {
	case eventpb.EventType_EVENT_TYPE_KICK_REQUESTED:
		what = "kick"
	case eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED:
		what = "revocation"
	}
	return fmt.Sprintf("; by the %s at seq %d%s", what, c.Seq, by(c.Event.GetActor())), nil
}

// policyNote names the login policy a connect asked the log to apply.
func policyNote(p *eventpb.LoginPolicy) string {
	switch t := PolicyText(p); t {
	case "", "none":
		return ""
	default:
		return " (login policy " + strings.ReplaceAll(t, ",", ", ") + ")"
	}
}

func on(device string) string {
	if device == "" {
		return ""
	}
	return " on device " + termtext.Field(device)
}

func from(addr string) string {
	if addr == "" {
		return ""
	}
	return " from " + termtext.Field(addr)
}

func over(transport string) string {
	if transport == "" {
		return ""
	}
	return " over " + termtext.Field(transport)
}

func via(node string) string {
	if node == "" {
		return ""
	}
	return " via node " + termtext.Field(node)
}

func by(actor string) string {
	if actor == "" {
		return ""
	}
	return " by " + termtext.Field(actor)
}

// fields is names escaped and joined with ", ".
func fields(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = termtext.Field(n)
	}
	return strings.Join(out, ", ")
}

// findByID finds the record with the given ULID, or nil. Ids order like
// seqs and carry their millisecond, so this is a binary search over time
// and a short scan; it reads on past damage (the damaged records and
// missing seqs it meets are noted in c and skipped).
func (e *Engine) findByID(ctx context.Context, id ulid.ULID, c *corruptions) (*ledger.Record, error) {
	ctx = WithProgress(ctx, nil) // a look back, not the query's progress
	from, err := e.seqAtTime(ctx, time.UnixMilli(int64(id.Time())).Add(-time.Second))
	if err != nil {
		return nil, err
	}
	var found *ledger.Record
	_, err = e.scan(ctx, from, 0, c, func(r *ledger.Record) error {
		switch r.ID.Compare(id) {
		case 0:
			found = r
			return ledger.ErrStop
		case 1:
			return ledger.ErrStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, ledger.ErrStop) {
		return nil, err
	}
	return found, nil
}
