package hub_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestKickAllExcept: "log out everywhere else". A kick of a user with
// except_session ends every other session of the user and leaves that one
// live; with except_device it spares the device's sessions. An
// except_session that is not a live session of the user is refused and
// nothing is recorded (it would spare nothing); the except fields go only
// with a user target.
func TestKickAllExcept(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	here := e.mustDial("kim", "phone")
	laptop := e.mustDial("kim", "laptop")
	tablet := e.mustDial("kim", "tablet")
	other := e.mustDial("lee", "phone")

	from := e.store.Head().Seq + 1
	for _, c := range []struct {
		name string
		req  *hubpb.KickRequest
		code codes.Code
	}{
		{"spared session of another user", &hubpb.KickRequest{User: "kim", ExceptSession: other.welcome.GetSessionId(), Reason: "r"}, codes.FailedPrecondition},
		{"spared session that is not live", &hubpb.KickRequest{User: "kim", ExceptSession: "01ARZ3NDEKTSV4RRFFQ69G5FAV", Reason: "r"}, codes.FailedPrecondition},
		{"except without a user", &hubpb.KickRequest{SessionId: here.welcome.GetSessionId(), ExceptDevice: "phone", Reason: "r"}, codes.InvalidArgument},
		{"both excepts", &hubpb.KickRequest{User: "kim", ExceptSession: here.welcome.GetSessionId(), ExceptDevice: "phone", Reason: "r"}, codes.InvalidArgument},
		{"except device with a device", &hubpb.KickRequest{User: "kim", Device: "phone", ExceptDevice: "phone", Reason: "r"}, codes.InvalidArgument},
	} {
		if _, err := e.admin.Kick(ctx, c.req); status.Code(err) != c.code {
			t.Errorf("%s: got %v; want %s", c.name, err, c.code)
		}
	}
	if got := e.events(from); len(got) != 0 {
		t.Fatalf("refused kicks recorded %d events: %s", len(got), describe(got[0]))
	}

	rep, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "kim", ExceptSession: here.welcome.GetSessionId(), Reason: "signed out everywhere else"})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != 2 {
		t.Errorf("kick addressed %d sessions; want 2 (laptop and tablet)", rep.GetSessions())
	}
	for _, c := range []*client{laptop, tablet} {
		d, st := c.expectEnd()
		if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_KICKED || d.GetEventId() != rep.GetEventId() || st.Code() != codes.Aborted {
			t.Errorf("kicked session ended with %v %v; want kicked by event %s", d, st, rep.GetEventId())
		}
	}
	kick := e.waitEvent(from, "the kick", isType(tKick))
	if k := kick.Event.GetKickRequested(); k.GetExceptSession() != here.welcome.GetSessionId() {
		t.Errorf("recorded kick spares %q; want %q", k.GetExceptSession(), here.welcome.GetSessionId())
	}
	// The spared session is live and served: a notification reaches it.
	if _, err := e.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "kim", Topic: "still-here", Payload: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if f, err := here.next(); err != nil || f.GetNotification().GetTopic() != "still-here" {
		t.Fatalf("spared session got %v, %v; want the notification", f, err)
	}
	if list, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{User: "kim"}); err != nil || len(list.GetSessions()) != 1 || list.GetSessions()[0].GetSessionId() != here.welcome.GetSessionId() {
		t.Fatalf("kim's sessions after the kick: %v %v; want only the spared one", list, err)
	}

	// except_device spares every session on the device.
	phone2 := e.mustDial("lee", "phone")
	desk := e.mustDial("lee", "desk")
	rep, err = e.admin.Kick(ctx, &hubpb.KickRequest{User: "lee", ExceptDevice: "phone", Reason: "phones only"})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := desk.expectEnd(); d.GetEventId() != rep.GetEventId() {
		t.Errorf("desk ended with %v; want the kick %s", d, rep.GetEventId())
	}
	list, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{User: "lee"})
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, s := range list.GetSessions() {
		if s.GetDevice() != "phone" || s.GetPendingEnd() != "" {
			t.Errorf("after except_device phone, %s on %s is live with pending end %q", s.GetSessionId(), s.GetDevice(), s.GetPendingEnd())
		}
		kept = kept || s.GetSessionId() == phone2.welcome.GetSessionId()
	}
	if !kept {
		t.Errorf("after except_device phone, the phone's session %s is not live: %v", phone2.welcome.GetSessionId(), list.GetSessions())
	}
}

// TestListSessionsPages: 10,000 live sessions come back page by page in
// session id order, each once, with the total on every page, and no page
// near the 4 MiB message limit; a filter pages the same way; a page size
// over the maximum and a forged token are refused.
func TestListSessionsPages(t *testing.T) {
	const n = 10_000
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	// Sessions of another node, recorded straight into the log: the
	// projections hold them live as they would a cluster peer's.
	var evs []*eventpb.Event
	var want []string
	for i := range n {
		id := fmt.Sprintf("s-%06d", (i*7919)%n) // not in id order
		want = append(want, id)
		evs = append(evs, &eventpb.Event{Type: tConnected, User: fmt.Sprintf("user-%d", i%100), Device: "d", Session: id, Node: "node-2",
			Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: "127.0.0.1:1"}}})
	}
	for chunk := range slices.Chunk(evs, 1000) {
		if _, err := e.store.Append(ctx, chunk...); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.d.Projections().WaitApplied(ctx, e.store.Head().Seq); err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)

	var got []string
	req := &hubpb.ListSessionsRequest{PageSize: 1000}
	pages := 0
	for {
		rep, err := e.admin.ListSessions(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if rep.GetTotal() != n {
			t.Fatalf("page %d: total %d; want %d", pages, rep.GetTotal(), n)
		}
		if size := proto.Size(rep); size > 1<<20 {
			t.Fatalf("page %d is %d bytes; want well under the 4 MiB limit", pages, size)
		}
		for _, s := range rep.GetSessions() {
			got = append(got, s.GetSessionId())
		}
		if req.PageToken = rep.GetNextPageToken(); req.PageToken == "" {
			break
		}
		if pages > n/1000+1 {
			t.Fatal("paging does not end")
		}
	}
	if pages != n/1000 || !slices.Equal(got, want) {
		t.Fatalf("%d pages, %d sessions (first %v); want %d pages of every session once, in id order", pages, len(got), got[:min(3, len(got))], n/1000)
	}

	// The default page, and a filtered listing.
	rep, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{})
	if err != nil || len(rep.GetSessions()) != 500 || rep.GetNextPageToken() == "" {
		t.Fatalf("default page: %d sessions, next %q, %v; want 500 and a next page", len(rep.GetSessions()), rep.GetNextPageToken(), err)
	}
	var mine []string
	req = &hubpb.ListSessionsRequest{User: "user-7", PageSize: 30}
	for {
		rep, err := e.admin.ListSessions(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if rep.GetTotal() != n/100 {
			t.Fatalf("user-7's total %d; want %d", rep.GetTotal(), n/100)
		}
		for _, s := range rep.GetSessions() {
			if s.GetUser() != "user-7" {
				t.Fatalf("user filter returned %s of %s", s.GetSessionId(), s.GetUser())
			}
			mine = append(mine, s.GetSessionId())
		}
		if req.PageToken = rep.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if len(mine) != n/100 || !slices.IsSorted(mine) {
		t.Fatalf("user-7: %d sessions, sorted %v; want %d in id order", len(mine), slices.IsSorted(mine), n/100)
	}

	for _, bad := range []*hubpb.ListSessionsRequest{{PageSize: 5001}, {PageToken: "!!not-base64!!"}} {
		if _, err := e.admin.ListSessions(ctx, bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListSessions(%v): got %v; want InvalidArgument", bad, err)
		}
	}
}

// TestShorterBanSaysTheBanInForceWasKept: a second, shorter ban is
// recorded and changes nothing; the reply says so and names the ban that
// stays and its end.
func TestShorterBanSaysTheBanInForceWasKept(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	long, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "mal", DurationMs: time.Hour.Milliseconds(), Reason: "spam"})
	if err != nil {
		t.Fatal(err)
	}
	if b := long.GetBanInForce(); b.GetKept() || b.GetEventId() != long.GetEventId() {
		t.Fatalf("first ban's reply: %v; want it in force, not kept", b)
	}
	short, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "mal", DurationMs: (10 * time.Minute).Milliseconds(), Reason: "again"})
	if err != nil {
		t.Fatal(err)
	}
	b := short.GetBanInForce()
	if !b.GetKept() || b.GetEventId() != long.GetEventId() || b.GetUntilUnixNano() != long.GetBanInForce().GetUntilUnixNano() {
		t.Fatalf("shorter ban's reply: %v; want kept, the first ban %s until %d", b, long.GetEventId(), long.GetBanInForce().GetUntilUnixNano())
	}
	// The timeline says the same, in the shorter ban's sentence.
	var texts []string
	err = audit.NewEngine(e.store).Timeline(ctx, audit.TimelineQuery{User: "mal"}, func(en audit.TimelineEntry) error {
		texts = append(texts, en.Text)
		return nil
	})
	wantUntil := time.Unix(0, long.GetBanInForce().GetUntilUnixNano()).UTC().Format(time.RFC3339)
	if err != nil || len(texts) != 2 || strings.Contains(texts[0], "changed nothing") ||
		!strings.Contains(texts[1], fmt.Sprintf("changed nothing: the ban in force (seq %d) ends later and was kept, until %s", long.GetSeq(), wantUntil)) {
		t.Fatalf("timeline %q, %v; want the second ban to say the first was kept until %s", texts, err, wantUntil)
	}
	longer, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "mal", Reason: "for good"})
	if err != nil {
		t.Fatal(err)
	}
	if b := longer.GetBanInForce(); b.GetKept() || b.GetEventId() != longer.GetEventId() || b.GetUntilUnixNano() != 0 {
		t.Fatalf("ban without expiry's reply: %v; want it in force", b)
	}
}

// TestWhoAmIAndLedgerStatus: WhoAmI names the token's actor and the admin
// methods it may call (an admin token: every one of the Admin and Audit
// services, none of the client stream; TestWhoAmIFollowsRole has the other
// roles); LedgerStatus reports the head and the projections' progress.
func TestWhoAmIAndLedgerStatus(t *testing.T) {
	e := newEnv(t, hub.Config{})
	ctx := adminCtx(ctxT(t))
	c := e.mustDial("wanda", "phone")
	_ = c
	me, err := e.admin.WhoAmI(ctx, &hubpb.WhoAmIRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if me.GetActor() != "ops-alice" {
		t.Errorf("actor %q; want ops-alice", me.GetActor())
	}
	for _, m := range []string{"/sessionledger.hub.v1.Admin/Kick", "/sessionledger.hub.v1.Admin/Backup", "/sessionledger.audit.v1.Audit/Timeline"} {
		if !slices.Contains(me.GetMethods(), m) {
			t.Errorf("methods %v lack %s", me.GetMethods(), m)
		}
	}
	for _, m := range me.GetMethods() {
		if m == "/sessionledger.hub.v1.Hub/Connect" || m == "/grpc.health.v1.Health/Check" {
			t.Errorf("methods list %s, which needs no admin token", m)
		}
	}
	if _, err := e.admin.WhoAmI(context.Background(), &hubpb.WhoAmIRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("WhoAmI without a token: %v; want Unauthenticated", err)
	}

	st, err := e.admin.LedgerStatus(ctx, &hubpb.LedgerStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	head := e.store.Head()
	if st.GetHeadSeq() != head.Seq || string(st.GetHeadHash()) != string(head.Hash[:]) || st.GetHeadId() != head.ID.String() ||
		st.GetAppliedSeq() != head.Seq || st.GetLag() != 0 || st.GetLiveSessions() != 1 || st.GetNode() != "node-1" || st.GetNotServing() != "" {
		t.Errorf("ledger status %v; want head %d applied, 1 live session on node-1, serving", st, head.Seq)
	}
}

// TestConnectLimitRefillsPerUser: over real gRPC, a user gets the burst of
// connects at once and is refused rate_limited after it; once the bucket
// has refilled for one connect (the hub's clock moved a second at 60 a
// minute), one more passes; another user's connects are not limited by
// the first one's.
func TestConnectLimitRefillsPerUser(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	e := newEnv(t, hub.Config{UserConnectsPerMinute: 60, UserConnectBurst: 2, Now: now, RejectWindow: time.Hour})
	e.mustDial("eager", "a")
	e.mustDial("eager", "b")
	_, err := e.dial("eager", "c")
	if st, rj := rejected(t, err); st.Code() != codes.ResourceExhausted || rj.GetCode() != "rate_limited" {
		t.Fatalf("third connect at once: %v %v; want rate_limited", st, rj)
	}
	e.mustDial("patient", "a") // another user's bucket
	clock.Add(int64(time.Second))
	e.mustDial("eager", "c")
	if _, err := e.dial("eager", "d"); err == nil {
		t.Fatal("a second connect after one second's refill passed")
	}
}
