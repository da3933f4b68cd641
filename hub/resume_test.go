package hub_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func resumeOf(c *client, lastAcked uint64) *hubpb.Resume {
	return &hubpb.Resume{SessionId: c.welcome.GetSessionId(), Secret: c.welcome.GetResumeSecret(), LastAckedSeq: lastAcked}
}

func (e *env) notifyUser(user, topic string) uint64 {
	e.t.Helper()
	rep, err := e.admin.Notify(adminCtx(ctxT(e.t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: user, Topic: topic})
	if err != nil {
		e.t.Fatal(err)
	}
	return rep.GetSeq()
}

func (e *env) kick(req *hubpb.KickRequest) *hubpb.ActionReply {
	e.t.Helper()
	if req.Reason == "" {
		req.Reason = "test kick"
	}
	rep, err := e.admin.Kick(adminCtx(ctxT(e.t)), req)
	if err != nil {
		e.t.Fatal(err)
	}
	return rep
}

// rejectedEvent waits for the connect_rejected event after from and checks
// its user and code.
func (e *env) rejectedEvent(from uint64, user, code string) {
	e.t.Helper()
	r := e.waitEvent(from, "connect_rejected", isType(tRejected))
	if r.Event.GetUser() != user || r.Event.GetConnectRejected().GetCode() != code {
		e.t.Fatalf("connect_rejected = user %q code %q; want %q %q", r.Event.GetUser(), r.Event.GetConnectRejected().GetCode(), user, code)
	}
}

func TestResumeRedeliversMissedInOrder(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("rita", "phone")
	acked := e.notifyUser("rita", "n1")
	if f, err := c.next(); err != nil || f.GetNotification().GetSeq() != acked {
		t.Fatalf("live notification: %v %v; want seq %d", f, err, acked)
	}
	e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId()})
	if d, _ := c.expectEnd(); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED {
		t.Fatalf("end = %v; want kicked", d)
	}
	e.waitEvent(acked, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	// Missed while away: two to the user, one to everyone; one to someone
	// else that must not come back.
	want := []uint64{e.notifyUser("rita", "n2"), e.notifyUser("rita", "n3")}
	all, err := e.admin.Notify(adminCtx(ctxT(t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "n4"})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, all.GetSeq())
	e.notifyUser("sam", "not-yours")

	r, err := e.dialHello(&hubpb.Hello{User: "rita", Device: "phone", Resume: resumeOf(c, acked)})
	if err != nil {
		t.Fatal(err)
	}
	if r.welcome.GetResumedFrom() != c.welcome.GetSessionId() || r.welcome.GetRedelivering() != uint32(len(want)) {
		t.Fatalf("welcome = %v; want resumed from %s redelivering %d", r.welcome, c.welcome.GetSessionId(), len(want))
	}
	for i, seq := range want {
		f, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if n := f.GetNotification(); n.GetSeq() != seq || !n.GetRedelivered() {
			t.Fatalf("redelivery %d = %v; want seq %d redelivered", i, f, seq)
		}
	}
	live := e.notifyUser("rita", "n5")
	if f, err := r.next(); err != nil || f.GetNotification().GetSeq() != live || f.GetNotification().GetRedelivered() {
		t.Fatalf("after redelivery: %v %v; want live seq %d", f, err, live)
	}
	rec := e.waitEvent(1, "session_reconnected", isType(tReconnected))
	body := rec.Event.GetSessionReconnected()
	if rec.Event.GetSession() != r.welcome.GetSessionId() || body.GetPreviousSession() != c.welcome.GetSessionId() || body.GetLastAckedSeq() != acked {
		t.Fatalf("session_reconnected = %v; want %s resuming %s after seq %d", rec.Event, r.welcome.GetSessionId(), c.welcome.GetSessionId(), acked)
	}
}

func TestResumeRefusedWrongSecret(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("tom", "d")
	c.close()
	e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	head := e.store.Head().Seq
	for _, res := range []*hubpb.Resume{
		{SessionId: c.welcome.GetSessionId(), Secret: "not-the-secret"},
		{SessionId: "no-such-session", Secret: c.welcome.GetResumeSecret()},
	} {
		_, err := e.dialHello(&hubpb.Hello{User: "tom", Device: "d", Resume: res})
		st, rj := rejected(t, err)
		if st.Code() != codes.PermissionDenied || rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED {
			t.Fatalf("resume %v: %v %v; want PermissionDenied resume_refused, reconnect allowed (afresh)", res, st, rj)
		}
	}
	// Another user cannot take the session over, even with its secret.
	if _, err := e.dialHello(&hubpb.Hello{User: "mallory", Device: "d", Resume: resumeOf(c, 0)}); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("resume by another user: %v; want PermissionDenied", err)
	}
	e.rejectedEvent(head+1, "tom", "resume_refused")
	for _, typ := range e.types(head + 1) {
		if typ == tReconnected || typ == tConnected {
			t.Fatalf("a refused resume recorded %v", typ)
		}
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

func TestResumeRefusedAfterNotAllowed(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("uma", "d")
	rep := e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	c.expectEnd()
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	head := e.store.Head().Seq
	_, err := e.dialHello(&hubpb.Hello{User: "uma", Device: "d", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if st.Code() != codes.PermissionDenied || rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("resume after not_allowed: %v %v; want PermissionDenied resume_refused not_allowed", st, rj)
	}
	e.rejectedEvent(head+1, "uma", "resume_refused")
	if got := e.types(head + 1); !equalTypes(got, tRejected) {
		t.Fatalf("ledger after the refusal = %v; want only connect_rejected", got)
	}
}

func TestResumeRefusedBeforeAfterThenAllowed(t *testing.T) {
	// The hub's clock can be pinned, to resume at exactly the advised time.
	var pinned atomic.Int64
	e := newEnv(t, hub.Config{Now: func() time.Time {
		if p := pinned.Load(); p != 0 {
			return time.Unix(0, p)
		}
		return time.Now()
	}})
	c := e.mustDial("vic", "d")
	const after = 400 * time.Millisecond
	rep := e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfterMs: after.Milliseconds()})
	f, err := c.next()
	if err != nil {
		t.Fatal(err)
	}
	// The client learns the advice with the frame: "after" must count from
	// no later than this.
	told := time.Now()
	d := f.GetDisconnect()
	c.expectEnd()
	if d.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || d.GetReconnectAfterMs() != after.Milliseconds() {
		t.Fatalf("disconnect = %v; want reconnect after %s", d, after)
	}
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	head := e.store.Head().Seq
	_, err = e.dialHello(&hubpb.Hello{User: "vic", Device: "d", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if st.Code() != codes.FailedPrecondition || rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER ||
		rj.GetReconnectAfterMs() <= 0 || rj.GetReconnectAfterMs() > after.Milliseconds() {
		t.Fatalf("early resume: %v %v; want FailedPrecondition resume_refused, after (0, %s]", st, rj, after)
	}
	e.rejectedEvent(head+1, "vic", "resume_refused")
	// A client that waits exactly as long as it was told must get in.
	time.Sleep(time.Until(told.Add(after)))
	pinned.Store(told.Add(after).UnixNano())
	r, err := e.dialHello(&hubpb.Hello{User: "vic", Device: "d", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatalf("resume %s after the advice arrived: %v; want it accepted", after, err)
	}
	if r.welcome.GetResumedFrom() != c.welcome.GetSessionId() {
		t.Fatalf("resumed from %q; want %q", r.welcome.GetResumedFrom(), c.welcome.GetSessionId())
	}
	if got := e.types(head + 1); !equalTypes(got, tRejected, tReconnected) {
		t.Fatalf("ledger = %v; want connect_rejected, session_reconnected", got)
	}
}

func TestResumeRefusedWhileBanned(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("wes", "d")
	rep, err := e.admin.Ban(adminCtx(ctxT(t)), &hubpb.BanRequest{User: "wes", Reason: "cheating"})
	if err != nil {
		t.Fatal(err)
	}
	c.expectEnd()
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	head := e.store.Head().Seq
	_, err = e.dialHello(&hubpb.Hello{User: "wes", Device: "d", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if st.Code() != codes.PermissionDenied || rj.GetCode() != "banned" || rj.GetReason() != "cheating" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("resume while banned: %v %v; want PermissionDenied banned not_allowed", st, rj)
	}
	e.rejectedEvent(head+1, "wes", "banned")
}

// TestResumeRefusedByAnotherSessionsKick: a resume its own session's end
// allows (the client closed it) is still refused while a kick of a later
// session on the same user and device refuses that device's connects,
// and the refusal names the kick.
func TestResumeRefusedByAnotherSessionsKick(t *testing.T) {
	e := newEnv(t, hub.Config{RejectWindow: time.Hour})
	old := e.mustDial("ivo", "d")
	old.close()
	e.waitEnd(1, old.welcome.GetSessionId())
	cur := e.mustDial("ivo", "d")
	rep := e.kick(&hubpb.KickRequest{SessionId: cur.welcome.GetSessionId(), Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	endedWith(t, cur, hubpb.DisconnectCode_DISCONNECT_CODE_KICKED, rep.GetEventId())
	e.waitEnd(rep.GetSeq(), cur.welcome.GetSessionId())
	head := e.store.Head().Seq
	_, err := e.dialHello(&hubpb.Hello{User: "ivo", Device: "d", Resume: resumeOf(old, 0)})
	rj := rejectedWith(t, err, codes.PermissionDenied, "kicked", rep.GetEventId())
	if rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("got reconnect %v; want %v (the kick's)", rj.GetReconnect(), hubpb.Reconnect_RECONNECT_NOT_ALLOWED)
	}
	e.rejectedRecord(head, "kicked", rep.GetEventId())
	if got := e.types(head + 1); !equalTypes(got, tRejected) {
		t.Fatalf("ledger after the refusal = %v; want only connect_rejected", got)
	}
}

// TestResumeRefusedWithRevokedToken: a resume its own session's end
// allows is refused when it comes with a token revoked since, naming the
// revocation.
func TestResumeRefusedWithRevokedToken(t *testing.T) {
	e := newEnv(t, hub.Config{JWTSecret: testSecret, RejectWindow: time.Hour})
	now := time.Now()
	tok := signHS(t, claims("ines", "d", "jti-ines", now, now.Add(time.Hour)))
	c, err := e.dialHello(&hubpb.Hello{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	c.close()
	e.waitEnd(1, c.welcome.GetSessionId())
	rep := e.revoke(&hubpb.RevokeRequest{TokenId: "jti-ines", Reason: "token leaked"})
	head := e.store.Head().Seq
	_, err = e.dialHello(&hubpb.Hello{Token: tok, Resume: resumeOf(c, 0)})
	rejectedWith(t, err, codes.PermissionDenied, "revoked", rep.GetEventId())
	e.rejectedRecord(head, "revoked", rep.GetEventId())
	if got := e.types(head + 1); !equalTypes(got, tRejected) {
		t.Fatalf("ledger after the refusal = %v; want only connect_rejected", got)
	}
}

func TestResumeWindowPassed(t *testing.T) {
	e := newEnv(t, hub.Config{ResumeWindow: 100 * time.Millisecond})
	c := e.mustDial("xena", "d")
	c.close()
	e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	time.Sleep(150 * time.Millisecond)
	head := e.store.Head().Seq
	_, err := e.dialHello(&hubpb.Hello{User: "xena", Device: "d", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if st.Code() != codes.FailedPrecondition || rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED {
		t.Fatalf("resume after the window: %v %v; want FailedPrecondition, connect afresh allowed", st, rj)
	}
	e.rejectedEvent(head+1, "xena", "resume_refused")
}

// TestLateResumeOfSessionNotAllowedBack: a session kicked "not allowed"
// and resumed after the resume window is refused with that advice, not
// with "connect afresh" (which a client would follow straight back in).
func TestLateResumeOfSessionNotAllowedBack(t *testing.T) {
	e := newEnv(t, hub.Config{ResumeWindow: 100 * time.Millisecond})
	c := e.mustDial("xavi", "d")
	rep := e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	c.expectEnd()
	e.waitEvent(rep.GetSeq(), "disconnected", disconnectOf(c.welcome.GetSessionId()))
	time.Sleep(150 * time.Millisecond)
	head := e.store.Head().Seq
	_, err := e.dialHello(&hubpb.Hello{User: "xavi", Device: "d", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED {
		t.Fatalf("late resume of a session kicked not_allowed: %v %v; want resume_refused, not allowed", st, rj)
	}
	e.rejectedEvent(head+1, "xavi", "resume_refused")
}

func TestResumeOfLiveSessionSupersedesIt(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("yan", "d")
	r, err := e.dialHello(&hubpb.Hello{User: "yan", Device: "d", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := c.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != r.welcome.GetSessionId() {
		t.Fatalf("old session end = %v; want superseded by %s", d, r.welcome.GetSessionId())
	}
	end := e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
	if end.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED {
		t.Fatalf("cause = %v; want superseded", end.Event.GetSessionDisconnected().GetCause())
	}
}

// A resume races notifications recorded while it is being admitted: each
// must reach the new session exactly once (redelivered or live), in order.
func TestResumeNoDuplicatesUnderConcurrentNotify(t *testing.T) {
	e := newEnv(t, hub.Config{})
	for round := range 5 {
		c := e.mustDial("zoe", "d")
		c.close()
		e.waitEvent(1, "disconnected", disconnectOf(c.welcome.GetSessionId()))
		start := e.store.Head().Seq

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200 && ctx.Err() == nil; i++ {
				if _, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "zoe", Topic: "burst"}); err != nil && ctx.Err() == nil {
					t.Errorf("notify: %v", err)
					return
				}
			}
		}()
		time.Sleep(time.Duration(round+1) * 3 * time.Millisecond)
		r, err := e.dialHello(&hubpb.Hello{User: "zoe", Device: "d", Resume: resumeOf(c, start)})
		if err != nil {
			cancel()
			wg.Wait()
			t.Fatal(err)
		}
		time.Sleep(30 * time.Millisecond)
		cancel()
		wg.Wait()
		// Every notification after start, as the ledger has them.
		var want []uint64
		for _, rec := range e.events(start + 1) {
			if rec.Event.GetType() == tNotification {
				want = append(want, rec.Seq)
			}
		}
		var got []uint64
		for len(got) < len(want) {
			f, err := r.next()
			if err != nil {
				t.Fatalf("round %d: stream ended after %d of %d notifications: %v", round, len(got), len(want), err)
			}
			got = append(got, f.GetNotification().GetSeq())
			if n := len(got); n > 1 && got[n-1] <= got[n-2] {
				t.Fatalf("round %d: seq %d after %d: duplicate or out of order (got %v)", round, got[n-1], got[n-2], got)
			}
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("round %d: got %v; want %v", round, got, want)
			}
		}
		r.close()
		e.waitEvent(start, "disconnected", disconnectOf(r.welcome.GetSessionId()))
	}
}

// TestResumeTwiceKeepsOneSession: resuming the same ended session a second
// time (the client never saw the first resume's Welcome) supersedes the
// first resume instead of leaving two live sessions on one secret.
func TestResumeTwiceKeepsOneSession(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("zed", "phone")
	e.kick(&hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reason: "move"})
	c.expectEnd()
	first, err := e.dialHello(&hubpb.Hello{User: "zed", Device: "phone", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.dialHello(&hubpb.Hello{User: "zed", Device: "phone", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatal(err)
	}
	d, _ := first.expectEnd()
	if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != second.welcome.GetSessionId() {
		t.Fatalf("first resume ended with %v; want superseded by %s", d, second.welcome.GetSessionId())
	}
	e.waitEnd(1, first.welcome.GetSessionId())
	ls, err := e.admin.ListSessions(adminCtx(ctxT(t)), &hubpb.ListSessionsRequest{User: "zed"})
	if err != nil || len(ls.GetSessions()) != 1 || ls.GetSessions()[0].GetSessionId() != second.welcome.GetSessionId() {
		t.Fatalf("zed's live sessions: %v (%v); want only %s", ls.GetSessions(), err, second.welcome.GetSessionId())
	}
}

// TestResumeTheMomentTheEndArrivesFollowsItsAdvice: a client that resumes
// as soon as it reads a Disconnect (or sees an abort close its connection)
// races the recording of its end; the resume must still get the end's
// advice: refused for not_allowed and for a "reconnect after" not yet
// passed.
func TestResumeTheMomentTheEndArrivesFollowsItsAdvice(t *testing.T) {
	e := newEnv(t, hub.Config{})
	for i, c := range []struct {
		name   string
		kick   *hubpb.KickRequest
		code   codes.Code
		advice hubpb.Reconnect
	}{
		{"graceful not_allowed", &hubpb.KickRequest{Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED}, codes.PermissionDenied, hubpb.Reconnect_RECONNECT_NOT_ALLOWED},
		{"graceful after", &hubpb.KickRequest{Reconnect: hubpb.Reconnect_RECONNECT_AFTER, ReconnectAfterMs: time.Minute.Milliseconds()}, codes.FailedPrecondition, hubpb.Reconnect_RECONNECT_AFTER},
		{"abort not_allowed", &hubpb.KickRequest{Mode: hubpb.KickMode_KICK_MODE_ABORT, Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED}, codes.PermissionDenied, hubpb.Reconnect_RECONNECT_NOT_ALLOWED},
	} {
		for round := range 10 {
			user := fmt.Sprintf("eager-%d-%d", i, round)
			old := e.mustDial(user, "d")
			from := e.store.Head().Seq + 1
			kick := c.kick
			kick.SessionId, kick.Reason = old.welcome.GetSessionId(), "out"
			go e.admin.Kick(adminCtx(ctxT(t)), proto.Clone(kick).(*hubpb.KickRequest))
			// Read up to the Disconnect frame (graceful) or the broken
			// transport (abort), and come straight back.
			for {
				f, err := old.next()
				if err != nil || f.GetDisconnect() != nil {
					break
				}
			}
			_, err := e.dialHello(&hubpb.Hello{User: user, Device: "d", Resume: resumeOf(old, 0)})
			st, rj := rejected(t, err)
			if st.Code() != c.code || rj.GetCode() != "resume_refused" || rj.GetReconnect() != c.advice {
				t.Fatalf("%s, round %d: resume right after the end: %v %v; want %v resume_refused %v", c.name, round, st, rj, c.code, c.advice)
			}
			e.waitEvent(from, "the kicked session's end", disconnectOf(old.welcome.GetSessionId()))
			for _, typ := range e.types(from) {
				if typ == tReconnected {
					t.Fatalf("%s, round %d: a refused resume was recorded as session_reconnected", c.name, round)
				}
			}
		}
	}
}

// TestResumeFromAnotherDeviceRefused: a resume secret is bound to the
// device its session was opened on; from another device the resume is
// refused (that device may connect afresh) and recorded.
func TestResumeFromAnotherDeviceRefused(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("dora", "phone")
	c.close()
	e.waitEnd(1, c.welcome.GetSessionId())
	head := e.store.Head().Seq
	_, err := e.dialHello(&hubpb.Hello{User: "dora", Device: "tablet", Resume: resumeOf(c, 0)})
	st, rj := rejected(t, err)
	if st.Code() != codes.PermissionDenied || rj.GetCode() != "resume_refused" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED ||
		!strings.Contains(rj.GetReason(), "only from the device it was opened on") {
		t.Fatalf("resume from another device: %v %v; want PermissionDenied resume_refused, connect afresh allowed", st, rj)
	}
	r, err := e.dialHello(&hubpb.Hello{User: "dora", Device: "phone", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatalf("resume from the same device: %v", err)
	}
	e.expectLedger(head+1,
		"connect_rejected dora/tablet resume_refused x1: a session can be resumed only from the device it was opened on; connect afresh",
		"session_reconnected dora/phone "+r.welcome.GetSessionId()+" from "+c.welcome.GetSessionId())
}

// TestResumeWithoutAckStartsAtTheChain: a client that never acked resumes
// with last_acked_seq 0; it gets what was sent since its first session
// connected, not broadcasts from before it existed, also two resumes on.
func TestResumeWithoutAckStartsAtTheChain(t *testing.T) {
	e := newEnv(t, hub.Config{})
	all := func(topic string) uint64 {
		rep, err := e.admin.Notify(adminCtx(ctxT(t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		return rep.GetSeq()
	}
	all("before-1")
	all("before-2")
	c := e.mustDial("finn", "d")
	during := all("during")
	if f, err := c.next(); err != nil || f.GetNotification().GetSeq() != during {
		t.Fatalf("live: %v %v", f, err)
	}
	c.close() // never acked
	e.waitEnd(1, c.welcome.GetSessionId())
	away := all("away")
	r1, err := e.dialHello(&hubpb.Hello{User: "finn", Device: "d", Resume: resumeOf(c, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := r1.welcome; got.GetRedelivering() != 2 || got.GetOldestRedeliveredSeq() != during || got.GetRedeliveryTruncated() {
		t.Fatalf("first resume: welcome %v; want 2 redelivered from seq %d (not the broadcasts before the session), not truncated", got, during)
	}
	for _, want := range []uint64{during, away} {
		if f, err := r1.next(); err != nil || f.GetNotification().GetSeq() != want {
			t.Fatalf("redelivered %v %v; want seq %d", f, err, want)
		}
	}
	r1.close()
	e.waitEnd(1, r1.welcome.GetSessionId())
	r2, err := e.dialHello(&hubpb.Hello{User: "finn", Device: "d", Resume: resumeOf(r1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.welcome; got.GetRedelivering() != 2 || got.GetOldestRedeliveredSeq() != during {
		t.Fatalf("second resume: welcome %v; want the same 2 from seq %d (the chain began with the first connect)", got, during)
	}
}

// TestResumeSaysWhenRedeliveryIsTruncated: over the redelivery limit the
// newest are redelivered and the Welcome says some are missing, and from
// which seq on the redelivery is whole.
func TestResumeSaysWhenRedeliveryIsTruncated(t *testing.T) {
	e := newEnv(t, hub.Config{RedeliveryLimit: 2})
	c := e.mustDial("gil", "d")
	c.close()
	e.waitEnd(1, c.welcome.GetSessionId())
	seqs := []uint64{e.notifyUser("gil", "1"), e.notifyUser("gil", "2"), e.notifyUser("gil", "3")}
	r, err := e.dialHello(&hubpb.Hello{User: "gil", Device: "d", Resume: resumeOf(c, c.welcome.GetSeq())})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.welcome; got.GetRedelivering() != 2 || got.GetOldestRedeliveredSeq() != seqs[1] || !got.GetRedeliveryTruncated() {
		t.Fatalf("welcome %v; want 2 redelivered from seq %d, truncated", got, seqs[1])
	}
	// Acked up to the first: the other two fit, nothing is missing.
	r.close()
	e.waitEnd(1, r.welcome.GetSessionId())
	r2, err := e.dialHello(&hubpb.Hello{User: "gil", Device: "d", Resume: resumeOf(r, seqs[0])})
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.welcome; got.GetRedelivering() != 2 || got.GetOldestRedeliveredSeq() != seqs[1] || got.GetRedeliveryTruncated() {
		t.Fatalf("welcome %v; want 2 redelivered from seq %d, not truncated", got, seqs[1])
	}
}
