package main

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// TestLoginPolicyAcrossNodes: two logins of alice/phone raced on nodes A
// and B, round after round. Each hub sees only its own view when it
// connects; the reducer decides in log order, so after every round the
// earlier of the two is superseded by the later (its client is told so),
// the three nodes list the same one live session, and a replay of any
// node's ledger gives the same.
func TestLoginPolicyAcrossNodes(t *testing.T) {
	rounds := 100
	if testing.Short() {
		rounds = 25
	}
	// One user logs in up to 100 times on a node within seconds: more than
	// the per-user token bucket lets through by default (a burst of 10).
	nodes := newCluster(t, 3, "--user-connect-burst", "200", "--user-connects-per-minute", "6000")
	a, b := nodes[0], nodes[1]
	conns := []*grpc.ClientConn{dialConn(t, a.p.grpc), dialConn(t, b.p.grpc)}
	var winners, losers []string
	for round := range rounds {
		var got [2]login
		var errs [2]error
		var wg sync.WaitGroup
		start := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i, conn := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				got[i], errs[i] = hello(ctx, conn, "alice", "phone")
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: login on %s: %v", round, nodes[i].name, err)
			}
		}
		early, late := got[0], got[1]
		if early.w.GetSeq() > late.w.GetSeq() {
			early, late = late, early
		}
		// The earlier login is superseded by the later one.
		for {
			f, err := early.st.Recv()
			if err != nil {
				t.Fatalf("round %d: session %s ended without a Disconnect: %v", round, early.w.GetSessionId(), err)
			}
			if d := f.GetDisconnect(); d != nil {
				if d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_SUPERSEDED || d.GetSupersededBy() != late.w.GetSessionId() {
					t.Fatalf("round %d: earlier login %s ended with %v; want superseded by %s", round, early.w.GetSessionId(), d, late.w.GetSessionId())
				}
				break
			}
		}
		winners, losers = append(winners, late.w.GetSessionId()), append(losers, early.w.GetSessionId())
	}
	last := winners[len(winners)-1]
	for _, nd := range nodes {
		admin, ctx := nd.admin(t)
		waitFor(t, nd.name+" lists alice's one session", func() bool {
			res, err := admin.ListSessions(ctx, &hubpb.ListSessionsRequest{User: "alice"})
			return err == nil && len(res.GetSessions()) == 1 && res.GetSessions()[0].GetSessionId() == last
		})
	}
	var head uint64
	for _, nd := range nodes {
		admin, ctx := nd.admin(t)
		res, err := admin.ClusterStatus(ctx, &hubpb.ClusterStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		head = max(head, res.GetNodes()[0].GetHeadSeq())
	}
	for _, nd := range nodes {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Fatalf("%s exited %d", nd.name, code)
		}
	}
	for _, nd := range nodes {
		s, err := ledger.Open(filepath.Join(nd.data, "ledger.db"), &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		st, err := projections.StateAt(context.Background(), s, head)
		if err != nil {
			t.Fatal(err)
		}
		if live := st.Sessions(projections.Filter{User: "alice"}); len(live) != 1 || live[0].ID != last {
			t.Errorf("%s: a replay to seq %d has alice's sessions %v; want only %s", nd.name, head, live, last)
		}
		ended := map[string]*eventpb.SessionDisconnected{}
		err = s.Scan(context.Background(), 1, head, func(r *ledger.Record) error {
			if d := r.Event.GetSessionDisconnected(); d != nil {
				if ended[r.Event.GetSession()] != nil {
					t.Errorf("%s: session %s ended twice", nd.name, r.Event.GetSession())
				}
				ended[r.Event.GetSession()] = d
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range losers {
			if d := ended[id]; d.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_SUPERSEDED || d.GetSupersededBy() != winners[i] {
				t.Errorf("%s: round %d: end of %s is %v; want superseded by %s", nd.name, i, id, d, winners[i])
			}
		}
		s.Close()
	}
}

// waitFor polls ok every 50 ms for at most 20 s, and fails t naming what
// it waited for.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited 20 s: %s", what)
		}
	}
}

// login is a session's stream and its Welcome.
type login struct {
	st hubpb.Hub_ConnectClient
	w  *hubpb.Welcome
}

// hello connects user/device over conn; for goroutines (no t).
func hello(ctx context.Context, conn *grpc.ClientConn, user, device string) (login, error) {
	st, err := hubpb.NewHubClient(conn).Connect(ctx)
	if err != nil {
		return login{}, err
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: user, Device: device}}}); err != nil {
		return login{}, err
	}
	f, err := st.Recv()
	if err != nil {
		return login{}, err
	}
	if f.GetWelcome() == nil {
		return login{}, fmt.Errorf("first frame %v; want a Welcome", f)
	}
	return login{st, f.GetWelcome()}, nil
}
