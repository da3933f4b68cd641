package hub

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

func checkReason(reason string) error {
	if reason == "" {
		return invalidf("a reason is required (it is recorded for audit)")
	}
	if len(reason) > hubapi.MaxReasonBytes {
		return invalidf("reason is %d bytes; at most %d", len(reason), hubapi.MaxReasonBytes)
	}
	return nil
}

// checkNames refuses a name longer than hubapi.MaxNameBytes, or holding a
// character no name needs that would drive an operator's terminal or
// reorder what it shows (see badNameRune); names come in (field, value)
// pairs. Every name that enters the hub passes here, whichever way it
// arrives: Admin requests, Hello, and a client token's claims.
func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		v := pairs[i+1]
		if n := len(v); n > hubapi.MaxNameBytes {
			return invalidf("%s is %d bytes; at most %d", pairs[i], n, hubapi.MaxNameBytes)
		}
		if j := strings.IndexFunc(v, badNameRune); j >= 0 {
			r, _ := utf8.DecodeRuneInString(v[j:])
			return invalidf("%s holds %U at byte %d: names may not hold control characters, line breaks or bidirectional formatting characters", pairs[i], r, j)
		}
	}
	return nil
}

// badNameRune reports the characters a name may not hold: control
// characters (C0, DEL, C1: escape sequences, line breaks, tabs), the
// Unicode line and paragraph separators, and the bidirectional formatting
// characters (which make a terminal show text in another order). Reasons
// are free text and may hold them; every human-readable output escapes
// them (internal/termtext), names and reasons alike.
func badNameRune(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Bidi_Control)
}

// admin is the Admin service: operators' calls, each recorded in the log
// before it takes effect.
type admin struct {
	hubpb.UnimplementedAdminServer
	s *Server
}

func reply(st []ledger.Stamp, n int) *hubpb.ActionReply {
	last := st[len(st)-1]
	return &hubpb.ActionReply{EventId: last.ID.String(), Seq: last.Seq, Sessions: uint32(n)}
}

// Kick records a kick_requested event, waits until the projections applied
// it (the targeted sessions on this node are then being ended) and returns
// the event id.
func (a *admin) Kick(ctx context.Context, req *hubpb.KickRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if err := checkNames("session_id", req.GetSessionId(), "user", req.GetUser(), "device", req.GetDevice(),
		"except_session", req.GetExceptSession(), "except_device", req.GetExceptDevice()); err != nil {
		return nil, err
	}
	switch {
	case req.GetExceptSession() != "" && req.GetExceptDevice() != "":
		return nil, invalidf("give except_session or except_device, not both")
	case (req.GetExceptSession() != "" || req.GetExceptDevice() != "") && req.GetUser() == "":
		return nil, invalidf("except_session and except_device go with a user target (\"log out everywhere else\")")
	case req.GetExceptDevice() != "" && req.GetDevice() != "":
		return nil, invalidf("except_device goes with a user target without device")
	}
	k := &eventpb.KickRequested{
		Mode:             eventpb.KickMode(req.GetMode()),
		Reconnect:        eventpb.Reconnect(req.GetReconnect()),
		ReconnectAfterMs: req.GetReconnectAfterMs(),
		ExceptSession:    req.GetExceptSession(),
		ExceptDevice:     req.GetExceptDevice(),
	}
	if k.Mode == eventpb.KickMode_KICK_MODE_UNSPECIFIED {
		k.Mode = eventpb.KickMode_KICK_MODE_GRACEFUL
	}
	if k.Mode > eventpb.KickMode_KICK_MODE_ABORT {
		return nil, invalidf("unknown kick mode %d", req.GetMode())
	}
	switch {
	case k.Reconnect == eventpb.Reconnect_RECONNECT_UNSPECIFIED:
		k.Reconnect = eventpb.Reconnect_RECONNECT_ALLOWED
		if k.ReconnectAfterMs > 0 {
			k.Reconnect = eventpb.Reconnect_RECONNECT_AFTER
		}
	case k.Reconnect > eventpb.Reconnect_RECONNECT_AFTER:
		return nil, invalidf("unknown reconnect advice %d", req.GetReconnect())
	case k.Reconnect != eventpb.Reconnect_RECONNECT_AFTER && k.ReconnectAfterMs != 0:
		// "Not allowed" (or "allowed") with a delay says two things; the
		// client would be told one and the ledger would keep both.
		return nil, invalidf("reconnect_after_ms %d goes only with reconnect after, not %s", k.ReconnectAfterMs, req.GetReconnect())
	}
	if k.ReconnectAfterMs < 0 || (k.Reconnect == eventpb.Reconnect_RECONNECT_AFTER && k.ReconnectAfterMs == 0) {
		return nil, invalidf("reconnect after needs a positive duration")
	}
	if k.ReconnectAfterMs > hubapi.MaxReconnectAfter.Milliseconds() {
		return nil, invalidf("reconnect after %d ms is longer than the maximum %s; ban the user to keep them out longer", k.ReconnectAfterMs, hubapi.MaxReconnectAfter)
	}
	// The advice binds the server too: fresh connects of the kicked
	// sessions' user and device, or with their tokens, are refused for
	// the no-reconnect window (not allowed) or the delay (after). The
	// kick records for how long, so every node refuses the same.
	switch k.Reconnect {
	case eventpb.Reconnect_RECONNECT_NOT_ALLOWED:
		if s.cfg.NoReconnectWindow > 0 {
			k.RefuseConnectsMs = s.cfg.NoReconnectWindow.Milliseconds()
		}
	case eventpb.Reconnect_RECONNECT_AFTER:
		k.RefuseConnectsMs = k.ReconnectAfterMs
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, Actor: ActorFrom(ctx), Reason: req.GetReason(),
		Body: &eventpb.Event_KickRequested{KickRequested: k}}
	switch {
	case req.GetSessionId() != "" && req.GetUser() == "" && req.GetDevice() == "":
		k.Target = eventpb.KickTarget_KICK_TARGET_SESSION
		ev.Session = req.GetSessionId()
		// Index the kick under the session's user too, so "every kick of
		// user U" finds it.
		s.proj.Read(func(st *projections.State) {
			if sess, ok := st.Session(ev.Session); ok {
				ev.User, ev.Device = sess.User, sess.Device
			}
		})
	case req.GetSessionId() == "" && req.GetUser() != "" && req.GetDevice() == "":
		k.Target = eventpb.KickTarget_KICK_TARGET_USER
		ev.User = req.GetUser()
	case req.GetSessionId() == "" && req.GetUser() != "" && req.GetDevice() != "":
		k.Target = eventpb.KickTarget_KICK_TARGET_USER_DEVICE
		ev.User, ev.Device = req.GetUser(), req.GetDevice()
	default:
		return nil, invalidf("kick needs exactly one target: session_id, or user (with an optional device)")
	}
	// Under the user's connect lock, as Ban: a resume decided under it
	// sees this kick's pending end, or lands before the kick.
	if ev.User != "" {
		lock := s.userLock(ev.User)
		lock.Lock()
		defer lock.Unlock()
	}
	if ex := req.GetExceptSession(); ex != "" {
		// A stale or mistyped id would spare nothing: "everywhere else"
		// would become "everywhere". Refuse it instead.
		var sess projections.Session
		var live bool
		s.proj.Read(func(st *projections.State) { sess, live = st.Session(ex) })
		if !live || sess.User != ev.User || (ev.Device != "" && sess.Device != ev.Device) {
			where := ""
			if ev.Device != "" {
				where = " on device " + strconv.Quote(ev.Device)
			}
			return nil, fmt.Errorf("%w: except_session %q is not a live session of %q%s; nothing was kicked", ErrExceptNotLive, ex, ev.User, where)
		}
	}
	st, err := s.publishApplied(ctx, ev)
	if err != nil {
		return nil, err
	}
	return reply(st, s.affectedBy(st[0].Seq)), nil
}

// Ban records a user_banned event; the user's live sessions end and new
// connects are refused until the ban expires or is lifted.
func (a *admin) Ban(ctx context.Context, req *hubpb.BanRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if req.GetUser() == "" {
		return nil, invalidf("ban needs a user")
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if err := checkNames("user", req.GetUser()); err != nil {
		return nil, err
	}
	if req.GetDurationMs() < 0 || req.GetUntilUnixNano() < 0 || (req.GetDurationMs() > 0 && req.GetUntilUnixNano() > 0) {
		return nil, invalidf("ban takes a positive duration or an expiry time, not both")
	}
	var until int64
	now := s.cfg.Now()
	switch {
	case req.GetDurationMs() > hubapi.MaxBanDuration.Milliseconds():
		return nil, invalidf("ban duration %d ms is longer than the maximum %s; leave duration and expiry out for a ban without expiry", req.GetDurationMs(), hubapi.MaxBanDuration)
	case req.GetDurationMs() > 0:
		until = now.Add(time.Duration(req.GetDurationMs()) * time.Millisecond).UnixNano()
	case req.GetUntilUnixNano() > now.Add(hubapi.MaxBanDuration).UnixNano():
		return nil, invalidf("ban expiry %s is more than %s from now; leave duration and expiry out for a ban without expiry",
			time.Unix(0, req.GetUntilUnixNano()).UTC().Format(time.RFC3339), hubapi.MaxBanDuration)
	case req.GetUntilUnixNano() > 0:
		until = req.GetUntilUnixNano()
	}
	if until != 0 && until <= now.UnixNano() {
		return nil, invalidf("ban expiry %s is in the past", time.Unix(0, until).UTC().Format(time.RFC3339))
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: req.GetUser(), Actor: ActorFrom(ctx), Reason: req.GetReason(),
		Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: until}}}
	// A connect checks the ban and records itself under the user's lock;
	// recording the ban under the same lock puts it either before that
	// check (the connect is refused) or after the connect is applied (the
	// ban marks the new session). Without it a connect could read "not
	// banned", the ban could apply to no session, and the connect land
	// after it: a banned user left connected. The projections also mark a
	// session that connects while its user is banned at the record's time
	// (onChange enforces that like any pending end), which covers other
	// nodes; this lock keeps one node exact and cheap.
	lock := s.userLock(req.GetUser())
	lock.Lock()
	st, err := s.publishApplied(ctx, ev)
	var inForce projections.Ban
	var banned bool
	if err == nil {
		s.proj.Read(func(ps *projections.State) { inForce, banned = ps.BanAt(req.GetUser(), s.cfg.Now()) })
	}
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	out := reply(st, s.affectedBy(st[0].Seq))
	if banned {
		// A ban that ends no later than the one in force is recorded and
		// changes nothing: say which ban stays, and until when.
		out.BanInForce = &hubpb.BanInForce{EventId: inForce.EventID.String(), Seq: inForce.Seq, Kept: inForce.EventID != st[0].ID}
		if !inForce.Until.IsZero() {
			out.BanInForce.UntilUnixNano = inForce.Until.UnixNano()
		}
	}
	return out, nil
}

// Unban records a user_unbanned event for a user who is banned now.
func (a *admin) Unban(ctx context.Context, req *hubpb.UnbanRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if req.GetUser() == "" {
		return nil, invalidf("unban needs a user")
	}
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if err := checkNames("user", req.GetUser()); err != nil {
		return nil, err
	}
	banned := false
	s.proj.Read(func(st *projections.State) { _, banned = st.BanAt(req.GetUser(), s.cfg.Now()) })
	if !banned {
		return nil, ErrNotBanned
	}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: req.GetUser(), Actor: ActorFrom(ctx), Reason: req.GetReason(),
		Body: &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}}
	st, err := s.publishApplied(ctx, ev)
	if err != nil {
		return nil, err
	}
	return reply(st, 0), nil
}

// Notify records a notification_sent event; the hub delivers it to the
// addressed live sessions from the projection feed.
func (a *admin) Notify(ctx context.Context, req *hubpb.NotifyRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if req.GetTopic() == "" {
		return nil, invalidf("notify needs a topic")
	}
	if err := checkNames("topic", req.GetTopic(), "session_id", req.GetSessionId(), "user", req.GetUser()); err != nil {
		return nil, err
	}
	if len(req.GetPayload()) > hubapi.MaxNotifyPayload {
		return nil, invalidf("payload is %d bytes; at most %d", len(req.GetPayload()), hubapi.MaxNotifyPayload)
	}
	n := &eventpb.NotificationSent{Topic: req.GetTopic(), Payload: req.GetPayload()}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, Actor: ActorFrom(ctx),
		Body: &eventpb.Event_NotificationSent{NotificationSent: n}}
	switch req.GetTarget() {
	case hubpb.NotifyTarget_NOTIFY_TARGET_SESSION:
		if req.GetSessionId() == "" || req.GetUser() != "" {
			return nil, invalidf("notify to a session needs session_id only")
		}
		n.Target, ev.Session = eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION, req.GetSessionId()
		s.proj.Read(func(st *projections.State) {
			if sess, ok := st.Session(ev.Session); ok {
				ev.User = sess.User
			}
		})
	case hubpb.NotifyTarget_NOTIFY_TARGET_USER:
		if req.GetUser() == "" || req.GetSessionId() != "" {
			return nil, invalidf("notify to a user needs user only")
		}
		n.Target, ev.User = eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, req.GetUser()
	case hubpb.NotifyTarget_NOTIFY_TARGET_ALL:
		if req.GetUser() != "" || req.GetSessionId() != "" {
			return nil, invalidf("notify to all takes no session or user")
		}
		n.Target = eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL
	default:
		return nil, invalidf("notify needs a target: session, user or all")
	}
	st, err := s.publishApplied(ctx, ev)
	if err != nil {
		return nil, err
	}
	count := s.affectedBy(st[0].Seq)
	if n.Target == eventpb.NotificationTarget_NOTIFICATION_TARGET_ALL {
		count = s.Live()
	}
	return reply(st, count), nil
}

// Revoke records a token_revoked event: one client token by its jti, or
// every token of a user issued before a time (default now). Live sessions
// holding a revoked token end with cause revoked, and connects and
// refreshes with one are refused. The event records when the revocation
// lapses (the token's expiry if given, else now plus MaxTokenTTL; for a
// user, the time plus MaxTokenTTL), after which no token it covers can be
// valid and the projections forget it.
func (a *admin) Revoke(ctx context.Context, req *hubpb.RevokeRequest) (*hubpb.ActionReply, error) {
	s := a.s
	if err := checkReason(req.GetReason()); err != nil {
		return nil, err
	}
	if err := checkNames("token_id", req.GetTokenId(), "user", req.GetUser()); err != nil {
		return nil, err
	}
	if req.GetIssuedBeforeUnixNano() < 0 || req.GetTokenExpiresUnixNano() < 0 {
		return nil, invalidf("times must not be negative")
	}
	now := s.cfg.Now()
	r := &eventpb.TokenRevoked{}
	ev := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_TOKEN_REVOKED, Actor: ActorFrom(ctx), Reason: req.GetReason(),
		Body: &eventpb.Event_TokenRevoked{TokenRevoked: r}}
	switch {
	case req.GetTokenId() != "" && req.GetUser() == "" && req.GetIssuedBeforeUnixNano() == 0:
		r.TokenId = req.GetTokenId()
		until := now.Add(s.cfg.MaxTokenTTL)
		if e := req.GetTokenExpiresUnixNano(); e != 0 {
			if until = time.Unix(0, e); !until.After(now) {
				return nil, invalidf("the token expired at %s: there is nothing to revoke", until.UTC().Format(time.RFC3339))
			}
			if until.After(now.Add(hubapi.MaxBanDuration)) {
				return nil, invalidf("token expiry %s is too far ahead", until.UTC().Format(time.RFC3339))
			}
		}
		r.UntilUnixNano = until.UnixNano()
		// Index it under the user holding the token, if a live session
		// does, so the user's timeline tells it.
		s.proj.Read(func(st *projections.State) {
			if h := st.TokenHolders(r.TokenId); len(h) > 0 {
				ev.User = h[0].User
			}
		})
	case req.GetTokenId() == "" && req.GetUser() != "" && req.GetTokenExpiresUnixNano() == 0:
		ev.User = req.GetUser()
		before := now
		if b := req.GetIssuedBeforeUnixNano(); b != 0 {
			if before = time.Unix(0, b); before.After(now) {
				return nil, invalidf("issued before %s is in the future; revoke tokens issued up to now", before.UTC().Format(time.RFC3339))
			}
		}
		if !before.After(now.Add(-s.cfg.MaxTokenTTL)) {
			return nil, invalidf("every token issued before %s has expired (tokens live at most %s): there is nothing to revoke",
				before.UTC().Format(time.RFC3339), s.cfg.MaxTokenTTL)
		}
		r.IssuedBeforeUnixNano = before.UnixNano()
		r.UntilUnixNano = before.Add(s.cfg.MaxTokenTTL).UnixNano()
	default:
		return nil, invalidf("revoke needs exactly one target: token_id (with an optional token expiry), or user (with an optional issued-before time)")
	}
	// Under the user's connect lock, as Kick and Ban: a connect or a
	// refresh decided under it sees the revocation, or lands before it
	// (and the revocation then marks its session).
	if ev.User != "" {
		lock := s.userLock(ev.User)
		lock.Lock()
		defer lock.Unlock()
	}
	st, err := s.publishApplied(ctx, ev)
	if err != nil {
		return nil, err
	}
	return reply(st, s.affectedBy(st[0].Seq)), nil
}

// Page sizes of ListSessions: a page of the default size is a few
// hundred KiB, well under gRPC's 4 MiB message limit even at the largest.
const (
	defaultPageSize = 500
	maxPageSize     = 5000
)

// ListSessions lists live sessions from the projections: every node's
// sessions, as the projections of this node's replica of the log show them
// (in a cluster, every node of it). It pages in session id order:
// page_token is the last id of the previous page, encoded.
func (a *admin) ListSessions(ctx context.Context, req *hubpb.ListSessionsRequest) (*hubpb.ListSessionsReply, error) {
	s := a.s
	if err := checkNames("user", req.GetUser(), "device", req.GetDevice(), "node", req.GetNode()); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		return nil, invalidf("page_size %d is over the maximum %d", size, maxPageSize)
	}
	after := ""
	if t := req.GetPageToken(); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil || len(b) == 0 || len(b) > hubapi.MaxNameBytes {
			return nil, invalidf("page_token %q is not one this server gave", t)
		}
		after = string(b)
	}
	out := &hubpb.ListSessionsReply{}
	s.proj.Read(func(st *projections.State) {
		page, total := st.SessionsPage(projections.Filter{User: req.GetUser(), Device: req.GetDevice(), Node: req.GetNode()}, after, size+1)
		out.Total = uint64(total)
		if len(page) > size {
			page = page[:size]
			out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page[size-1].ID))
		}
		for i := range page {
			out.Sessions = append(out.Sessions, sessionInfo(st, page[i]))
		}
	})
	return out, nil
}

// GetSession returns one live session.
func (a *admin) GetSession(ctx context.Context, req *hubpb.GetSessionRequest) (*hubpb.SessionInfo, error) {
	s := a.s
	if req.GetSessionId() == "" {
		return nil, invalidf("get session needs session_id")
	}
	if err := checkNames("session_id", req.GetSessionId()); err != nil {
		return nil, err
	}
	var out *hubpb.SessionInfo
	s.proj.Read(func(st *projections.State) {
		if sess, ok := st.Session(req.GetSessionId()); ok {
			out = sessionInfo(st, sess)
		}
	})
	if out == nil {
		return nil, ErrNotFound
	}
	return out, nil
}

func sessionInfo(st *projections.State, sess projections.Session) *hubpb.SessionInfo {
	info := &hubpb.SessionInfo{SessionId: sess.ID, User: sess.User, Device: sess.Device, Node: sess.Node,
		RemoteAddr: sess.RemoteAddr, ConnectedUnixNano: sess.ConnectedAt.UnixNano(), PreviousSession: sess.Previous,
		Transport: sess.Transport}
	if p, ok := st.Pending(sess.ID); ok {
		info.PendingEnd = Cause(p.Cause).String()
	}
	info.TokenId = sess.TokenID
	if !sess.TokenExpires.IsZero() {
		info.TokenExpiresUnixNano = sess.TokenExpires.UnixNano()
	}
	return info
}

// WhoAmI names the caller and the admin methods its token may call.
func (a *admin) WhoAmI(ctx context.Context, _ *hubpb.WhoAmIRequest) (*hubpb.WhoAmIReply, error) {
	s := a.s
	role := RoleFrom(ctx)
	return &hubpb.WhoAmIReply{Actor: ActorFrom(ctx), Role: string(role), Methods: s.adminMethods(role)}, nil
}

// LedgerStatus reports the head of the log and the projections' progress.
func (a *admin) LedgerStatus(ctx context.Context, _ *hubpb.LedgerStatusRequest) (*hubpb.LedgerStatusReply, error) {
	s := a.s
	h := s.hist.Head()
	applied := s.proj.Applied()
	out := &hubpb.LedgerStatusReply{HeadSeq: h.Seq, AppliedSeq: applied, LiveSessions: uint64(s.Live()), Node: s.cfg.Node}
	if h.Seq > 0 {
		out.HeadHash, out.HeadId, out.HeadUnixNano = append([]byte(nil), h.Hash[:]...), h.ID.String(), h.Time.UnixNano()
	}
	if h.Seq > applied {
		out.Lag = h.Seq - applied
	}
	if err := s.Err(); err != nil {
		out.NotServing = err.Error()
	}
	return out, nil
}

// ClusterStatus lists the cluster's nodes (on a single node, this one).
func (a *admin) ClusterStatus(ctx context.Context, _ *hubpb.ClusterStatusRequest) (*hubpb.ClusterStatusReply, error) {
	s := a.s
	if s.cluster == nil {
		head := s.hist.Head()
		return &hubpb.ClusterStatusReply{Nodes: []*hubpb.NodeStatus{{
			Node: s.cfg.Node, HeadSeq: head.Seq, HeadHash: fmt.Sprintf("%x", head.Hash), AppliedSeq: s.proj.Applied(),
			Sessions: uint32(s.Live()), UpdatedUnixNano: time.Now().UnixNano(),
		}}}, nil
	}
	nodes, at, err := s.cluster.Nodes(ctx)
	if err != nil {
		// A partial list would look like a smaller cluster whose chains
		// agree: say that the registry did not answer instead.
		return nil, fmt.Errorf("%w: the cluster's node registry: %v", ErrLedger, err)
	}
	out := &hubpb.ClusterStatusReply{Clustered: true, ComparedSeq: at}
	for _, n := range nodes {
		out.Nodes = append(out.Nodes, &hubpb.NodeStatus{Node: n.Node, Addr: n.Addr, HeadSeq: n.HeadSeq, HeadHash: n.HeadHash,
			AppliedSeq: n.AppliedSeq, Lag: n.Lag, Sessions: uint32(n.Sessions), UpdatedUnixNano: n.Updated.UnixNano(),
			HashAtCompared: n.HashAtCompared, Differs: n.Differs})
	}
	return out, nil
}
