package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// TestDeadNodeSessionsEndAsLost: three hubd nodes; Go clients that know
// all three addresses hold their sessions on node C; C is SIGKILLed. The
// survivors record, within a few heartbeats, exactly one end with cause
// lost for each of C's sessions (none for anyone else's), naming C and the
// node that noticed; the clients resume on A or B and get the notification
// sent while they were away; the log shows none of C's sessions live
// shortly after the kill.
func TestDeadNodeSessionsEndAsLost(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	const heartbeat, lostAfter = 250 * time.Millisecond, 1500 * time.Millisecond
	nodes := newCluster(t, 3, "--cluster-heartbeat", heartbeat.String(), "--lost-after", lostAfter.String())
	a, b, c := nodes[0], nodes[1], nodes[2]
	addrs := c.p.grpc + "," + a.p.grpc + "," + b.p.grpc
	clients := make([]*client.Client, n)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := client.Dial(ctx, addrs, client.WithUser(fmt.Sprintf("u%03d", i), "d"),
				client.WithBackoff(client.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}), client.WithAutoAck())
			if err != nil {
				errs <- err
				return
			}
			clients[i] = cl
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	onC := map[string]bool{}
	for _, cl := range clients {
		onC[cl.Session().ID] = true
	}
	// One session on A, which must not be ended.
	_, kept := session(t, a.p.grpc, "kept", "d")

	killed := time.Now()
	c.sigkill(t)
	admin, actx := a.admin(t)
	var note *hubpb.ActionReply
	var err error
	for deadline := time.Now().Add(15 * time.Second); ; {
		if note, err = admin.Notify(actx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "while C was down"}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The survivors record C's sessions as lost.
	var recorded time.Duration
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err := admin.ListSessions(actx, &hubpb.ListSessionsRequest{Node: "node-c"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetSessions()) == 0 {
			recorded = time.Since(killed)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of node C still live 20 s after it was killed", len(res.GetSessions()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("all %d sessions of the killed node recorded lost %s after the kill (heartbeat %s, lost after %s)", n, recorded.Round(time.Millisecond), heartbeat, lostAfter)
	// Every client resumes elsewhere and gets the notification.
	for i, cl := range clients {
		got := false
		for deadline := time.After(30 * time.Second); !got; {
			select {
			case nt := <-cl.Notifications():
				got = nt.Seq == note.GetSeq()
			case <-deadline:
				t.Fatalf("client %d did not get the notification sent while its node was down (session %+v)", i, cl.Session())
			}
		}
		if s := cl.Session(); s.ResumedFrom == "" || onC[s.ID] {
			t.Errorf("client %d: session %+v; want a resume of its session on node C, elsewhere", i, s)
		}
	}
	for _, cl := range clients {
		cl.Close()
	}
	waitConverged(t, []*clusterNode{a, b})
	// The survivors' /metrics count the ends they published (JetStream
	// dropped any duplicate) and serve their lag.
	published := 0
	for _, nd := range []*clusterNode{a, b} {
		if metricValue(t, nd.p, "sessionledger_cluster_lag") == "" {
			t.Errorf("%s: /metrics does not serve sessionledger_cluster_lag", nd.name)
		}
		if v := metricValue(t, nd.p, "sessionledger_cluster_outcomes_unsettled"); v != "0" {
			t.Errorf("%s: sessionledger_cluster_outcomes_unsettled = %q; want 0 (every publish of a survivor was answered)", nd.name, v)
		}
		v, err := strconv.ParseFloat(metricValue(t, nd.p, "sessionledger_cluster_lost_recorded_total"), 64)
		if err != nil {
			t.Fatalf("%s: sessionledger_cluster_lost_recorded_total: %v", nd.name, err)
		}
		published += int(v)
	}
	if published < n {
		t.Errorf("the survivors count %d lost ends published; want at least %d", published, n)
	}
	for _, nd := range []*clusterNode{a, b} {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Errorf("%s exited %d:\n%s", nd.name, code, nd.p.output())
		}
	}
	for _, nd := range []*clusterNode{a, b} {
		s, err := ledger.Open(filepath.Join(nd.data, "ledger.db"), &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		lost := map[string]int{}
		err = s.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
			d := r.Event.GetSessionDisconnected()
			if d == nil {
				return nil
			}
			id := r.Event.GetSession()
			switch {
			case onC[id]:
				lost[id]++
				if lost[id] > 1 {
					t.Logf("%s: end #%d of %s at seq %d: cause %v, node %q, actor %q", nd.name, lost[id], id, r.Seq, d.GetCause(), r.Event.GetNode(), r.Event.GetActor())
				}
				if d.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST || r.Event.GetNode() != "node-c" || !strings.HasPrefix(r.Event.GetActor(), "node:node-") {
					t.Errorf("%s: end of %s: cause %v, node %q, actor %q; want lost, node-c, the detecting node", nd.name, id, d.GetCause(), r.Event.GetNode(), r.Event.GetActor())
				}
			case id == kept.GetSessionId():
				if d.GetCause() == eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST {
					t.Errorf("%s: a live node's session was recorded lost", nd.name)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for id := range onC {
			if lost[id] != 1 {
				t.Errorf("%s: session %s of node C has %d ends; want exactly one", nd.name, id, lost[id])
			}
		}
		// The state a moment after the kill has none of C's sessions.
		st, err := projections.StateAtTime(context.Background(), s, killed.Add(recorded+time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for _, sess := range st.Sessions(projections.Filter{Node: "node-c"}) {
			t.Errorf("%s: session %s of node C live after the kill", nd.name, sess.ID)
		}
		s.Close()
	}
}

// TestDeadNodeCarriesPendingEnds: three sessions on node C, each holding
// a client token; node C is SIGKILLed; before the others see it dead, one
// session's user has its tokens revoked and another's is kicked, through
// node A. Node C enforces neither (it is dead): the survivors record those
// two ends as the log says they must be (cause revoked, naming the
// revocation; cause kicked, naming the kick) and the third as lost, each
// once, in each survivor's ledger.
func TestDeadNodeCarriesPendingEnds(t *testing.T) {
	// A long --lost-after: the revocation and the kick must be recorded
	// before the survivors decide node C is dead, even if C led the stream
	// and publishes wait for a new leader (4–9 s, more on a loaded
	// machine).
	const heartbeat, lostAfter = 250 * time.Millisecond, 15 * time.Second
	// Revocations apply to sessions holding client tokens: every node
	// checks them with the same secret.
	secret := []byte("dead-node-test-secret-0123456789abcdef")
	secretFile := filepath.Join(t.TempDir(), "jwt.key")
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := newCluster(t, 3, "--cluster-heartbeat", heartbeat.String(), "--lost-after", lostAfter.String(), "--jwt-secret-file", secretFile)
	a, b, c := nodes[0], nodes[1], nodes[2]
	conn := dialConn(t, c.p.grpc)
	ids := map[string]string{}
	for _, u := range []string{"revoked", "kicked", "plain"} {
		tok, err := hubapi.MintToken(secret, u, "d", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		st, err := hubpb.NewHubClient(conn).Connect(ctx)
		if err == nil {
			err = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{Token: tok}}})
		}
		var f *hubpb.ServerFrame
		if err == nil {
			f, err = st.Recv()
		}
		if err != nil || f.GetWelcome() == nil {
			t.Fatalf("connect %s with a token on node C: %v, %v", u, f, err)
		}
		ids[u] = f.GetWelcome().GetSessionId()
	}
	c.sigkill(t)
	killed := time.Now()
	admin, actx := a.admin(t)
	var rev, kick *hubpb.ActionReply
	var revErr, kickErr error
	for deadline := time.Now().Add(20 * time.Second); rev == nil || kick == nil; time.Sleep(100 * time.Millisecond) {
		if rev == nil {
			rev, revErr = admin.Revoke(actx, &hubpb.RevokeRequest{User: "revoked", Reason: "stolen laptop"})
		}
		if kick == nil {
			kick, kickErr = admin.Kick(actx, &hubpb.KickRequest{User: "kicked", Reason: "kicked while its node was dead"})
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoke %v (%v), kick %v (%v) through node A after node C died", rev, revErr, kick, kickErr)
		}
	}
	if since := time.Since(killed); since > lostAfter {
		t.Fatalf("the revocation and the kick took %s, past --lost-after %s: the test cannot tell carried ends from lost ones", since, lostAfter)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		res, err := admin.ListSessions(actx, &hubpb.ListSessionsRequest{Node: "node-c"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.GetSessions()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions of node C still live 30 s after it was killed", len(res.GetSessions()))
		}
	}
	// Every survivor holds the whole log before it stops: B may still be
	// applying what A recorded.
	survivors := []*clusterNode{a, b}
	waitConverged(t, survivors)
	for _, nd := range survivors {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Errorf("%s exited %d:\n%s", nd.name, code, nd.p.output())
		}
	}
	type end struct {
		cause eventpb.DisconnectCause
		event string
	}
	want := map[string]end{
		ids["revoked"]: {eventpb.DisconnectCause_DISCONNECT_CAUSE_REVOKED, rev.GetEventId()},
		ids["kicked"]:  {eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, kick.GetEventId()},
		ids["plain"]:   {eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST, ""},
	}
	for _, nd := range survivors {
		got := map[string][]end{}
		for _, r := range ledgerRecords(t, nd) {
			d := r.Event.GetSessionDisconnected()
			if d == nil {
				continue
			}
			var ev string
			if id := d.GetCauseEventId(); len(id) > 0 {
				var u ulid.ULID
				copy(u[:], id)
				ev = u.String()
			}
			if r.Event.GetNode() != "node-c" {
				t.Errorf("%s: end of %s recorded with node %q; want node-c", nd.name, r.Event.GetSession(), r.Event.GetNode())
			}
			got[r.Event.GetSession()] = append(got[r.Event.GetSession()], end{d.GetCause(), ev})
		}
		for id, w := range want {
			if len(got[id]) != 1 || got[id][0] != w {
				t.Errorf("%s: ends of session %s: got %v; want one, %v", nd.name, id, got[id], w)
			}
		}
	}
}
