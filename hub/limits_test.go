package hub_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// rejection is one connect_rejected event, as the tests compare them.
type rejection struct {
	user, device, code string
	count              uint32
}

// shutdownRejections stops the hub (which records the refusals still
// being counted) and returns the connect_rejected events after from.
func (e *env) shutdownRejections(from uint64) []rejection {
	e.t.Helper()
	if err := e.srv.Shutdown(ctxT(e.t)); err != nil {
		e.t.Fatal(err)
	}
	var out []rejection
	for _, r := range e.events(from) {
		if r.Event.GetType() == tRejected {
			out = append(out, rejection{r.Event.GetUser(), r.Event.GetDevice(), r.Event.GetConnectRejected().GetCode(), r.Event.GetConnectRejected().GetCount()})
		}
	}
	return out
}

func sumCounts(rs []rejection) (n uint32) {
	for _, r := range rs {
		n += r.count
	}
	return n
}

// TestRejectFloodWithDistinctDevices: refusals are aggregated per (user,
// code), not per client-chosen device, so a user inventing a device per
// attempt writes two events a window (the first refusal, then one with the
// count and the devices), and the counts add up.
func TestRejectFloodWithDistinctDevices(t *testing.T) {
	e := newEnv(t, hub.Config{RejectWindow: time.Hour})
	if _, err := e.admin.Ban(adminCtx(ctxT(t)), &hubpb.BanRequest{User: "flooder", Reason: "spam"}); err != nil {
		t.Fatal(err)
	}
	from := e.store.Head().Seq + 1
	const attempts, workers = 400, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < attempts; i += workers {
				if _, err := e.dial("flooder", fmt.Sprintf("dev-%d", i)); codeOf(err) != codes.PermissionDenied {
					t.Errorf("attempt %d: %v; want PermissionDenied", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := e.shutdownRejections(from)
	if len(got) != 2 || sumCounts(got) != attempts || got[0].count != 1 || got[0].device == "" || got[1].device != "" {
		t.Fatalf("connect_rejected events %+v; want 2 (the first, with its device; then the other %d without one), counting %d", got, attempts-1, attempts)
	}
	for _, r := range got {
		if r.user != "flooder" || r.code != "banned" {
			t.Fatalf("event %+v; want flooder/banned", r)
		}
	}
	last := e.events(from)
	if reason := last[len(last)-1].Event.GetReason(); !strings.Contains(reason, "from more than 16 devices: dev-") {
		t.Fatalf("aggregate reason %q; want it to say it came from more than 16 devices and name some", reason)
	}
}

// TestRejectFloodOfUsersIsBounded: past the per-window bounds (lowered
// here to 3 written at once and 4 counted per user) the refusals of every
// further user are counted in one event per code, and the counts add up.
func TestRejectFloodOfUsersIsBounded(t *testing.T) {
	e := newEnv(t, hub.Config{RejectWindow: time.Hour, MaxSessions: 1})
	hub.SetRejectLimits(e.srv, 3, 4)
	e.mustDial("holder", "d")
	from := e.store.Head().Seq + 1
	const users = 30
	for i := range users {
		_, err := e.dial(fmt.Sprintf("u%02d", i), "d")
		if st, rj := rejected(t, err); st.Code() != codes.ResourceExhausted || rj.GetCode() != "node_full" {
			t.Fatalf("u%02d: %v %v; want ResourceExhausted node_full", i, st, rj)
		}
	}
	got := e.shutdownRejections(from)
	want := []rejection{
		{"u00", "d", "node_full", 1}, {"u01", "d", "node_full", 1}, {"u02", "d", "node_full", 1}, // at once
		{"", "", "node_full", users - 7}, // the overflow (sorted first: empty user)
		{"u03", "d", "node_full", 1}, {"u04", "d", "node_full", 1}, {"u05", "d", "node_full", 1}, {"u06", "d", "node_full", 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connect_rejected events\n got %+v\nwant %+v", got, want)
	}
	if sumCounts(got) != users {
		t.Fatalf("counts add up to %d; want %d", sumCounts(got), users)
	}
}

// TestRateLimitedIsRecordedAggregated: over the per-user connect rate a
// connect is refused with ResourceExhausted and reconnect advice, the
// first refusal recorded at once and the rest as one counted event.
func TestRateLimitedIsRecordedAggregated(t *testing.T) {
	e := newEnv(t, hub.Config{RejectWindow: time.Hour, UserConnectsPerMinute: 2})
	from := e.store.Head().Seq + 1
	e.mustDial("eager", "a")
	e.mustDial("eager", "b")
	for range 3 {
		_, err := e.dial("eager", "c")
		st, rj := rejected(t, err)
		if st.Code() != codes.ResourceExhausted || rj.GetCode() != "rate_limited" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER || rj.GetReconnectAfterMs() < 10_000 {
			t.Fatalf("third connect in a minute: %v %v; want ResourceExhausted rate_limited, reconnect after >= 10s", st, rj)
		}
	}
	got := e.shutdownRejections(from)
	want := []rejection{{"eager", "c", "rate_limited", 1}, {"eager", "c", "rate_limited", 2}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("connect_rejected events %+v; want %+v", got, want)
	}
	var disconnects int
	for _, r := range e.events(from) {
		if r.Event.GetType() == tDisconnected && r.Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SERVER_SHUTDOWN {
			disconnects++
		}
	}
	if disconnects != 0 {
		t.Fatalf("%d sessions ended other than by the shutdown", disconnects)
	}
}

// TestNodeFull: at MaxSessions a connect is refused with node_full and a
// jittered "after" advice; concurrent connects never take the node past
// the limit; a login that supersedes the user's own session is let in.
func TestNodeFull(t *testing.T) {
	e := newEnv(t, hub.Config{MaxSessions: 3, Policy: projectionsPolicy(0, true)})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var admitted []*client
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.dial(fmt.Sprintf("crowd-%d", i), "phone")
			if err != nil {
				st, rj := rejected(t, err)
				if st.Code() != codes.ResourceExhausted || rj.GetCode() != "node_full" || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_AFTER ||
					rj.GetReconnectAfterMs() < 5000 || rj.GetReconnectAfterMs() > 10000 {
					t.Errorf("crowd-%d: %v %v; want ResourceExhausted node_full, reconnect after 5-10 s", i, st, rj)
				}
				return
			}
			mu.Lock()
			admitted = append(admitted, c)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(admitted) != 3 || e.srv.Live() != 3 {
		t.Fatalf("%d admitted, %d live; want exactly MaxSessions = 3", len(admitted), e.srv.Live())
	}
	// The node is full, but a new login on the device of a session it
	// supersedes replaces it rather than adding one.
	old := admitted[0]
	var user string
	for _, r := range e.events(1) {
		if r.Event.GetSession() == old.welcome.GetSessionId() {
			user = r.Event.GetUser()
		}
	}
	nw := e.mustDial(user, "phone")
	if d, _ := old.expectEnd(); d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != nw.welcome.GetSessionId() {
		t.Fatalf("old session ended with %v; want superseded by %s", d, nw.welcome.GetSessionId())
	}
}

// TestClientFramesArePaced: a client that floods frames (here Acks) past
// ClientFrameRate is read no faster than the rate, and counted; its
// session stays up and is served.
func TestClientFramesArePaced(t *testing.T) {
	e := newEnv(t, hub.Config{ClientFrameRate: 5})
	c := e.mustDial("flood", "d")
	for i := range 40 {
		if err := c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Ack{Ack: &hubpb.Ack{Seq: uint64(i)}}}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.metric("sessionledger_client_frames_paced_total ") == "sessionledger_client_frames_paced_total 0" {
		if time.Now().After(deadline) {
			t.Fatal("no client frame was paced after 40 at a rate of 5 a second")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rep, err := e.admin.Notify(adminCtx(ctxT(t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: "flood", Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := c.next(); err != nil || f.GetNotification().GetSeq() != rep.GetSeq() {
		t.Fatalf("paced session got %v, %v; want the notification", f, err)
	}
}
