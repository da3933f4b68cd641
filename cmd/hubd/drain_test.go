package main

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestDrainMovesSessionsToOtherNodes: Go clients that know all three
// nodes hold their sessions on node C; an operator drains C through node
// A. Every session of C ends with a recorded cause (drained), its client
// comes back on A or B within the window and gets a notification sent
// after the drain; C refuses new connects and reports NOT_SERVING.
func TestDrainMovesSessionsToOtherNodes(t *testing.T) {
	n := 60
	if testing.Short() {
		n = 20
	}
	nodes := newCluster(t, 3)
	a, c := nodes[0], nodes[2]
	addrs := c.p.grpc + "," + a.p.grpc + "," + nodes[1].p.grpc
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clients := make([]*client.Client, n)
	onC := map[string]bool{}
	for i := range clients {
		cl, err := client.Dial(ctx, addrs, client.WithUser(fmt.Sprintf("d%03d", i), "phone"),
			client.WithBackoff(client.Backoff{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}), client.WithAutoAck())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[i] = cl
		if cl.Session().Addr != c.p.grpc {
			t.Fatalf("client %d started on %s; want node C", i, cl.Session().Addr)
		}
		onC[cl.Session().ID] = true
	}
	admin, actx := a.admin(t)
	const window = 2 * time.Second
	rep, err := admin.Drain(actx, &hubpb.DrainRequest{Node: "node-c", Reason: "upgrade", WindowMs: window.Milliseconds()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != uint32(n) {
		t.Errorf("drain addressed %d sessions; want %d", rep.GetSessions(), n)
	}
	drained := time.Now()
	waitFor(t, "every client on another node", func() bool {
		for _, cl := range clients {
			if s := cl.Session(); s.Addr == c.p.grpc || onC[s.ID] {
				return false
			}
		}
		return true
	})
	t.Logf("%d sessions moved off the drained node %s after the drain (window %s)", n, time.Since(drained).Round(time.Millisecond), window)
	note, err := admin.Notify(actx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "after the drain"})
	if err != nil {
		t.Fatal(err)
	}
	for i, cl := range clients {
		for got := false; !got; {
			select {
			case nt := <-cl.Notifications():
				got = nt.Seq == note.GetSeq()
			case <-ctx.Done():
				t.Fatalf("client %d did not get the notification sent after the drain", i)
			}
		}
	}
	// C takes no new sessions, and says so.
	if _, err := hello(ctx, dialConn(t, c.p.grpc), "late", "d"); status.Code(err) != codes.Unavailable {
		t.Errorf("connect to the drained node: %v; want Unavailable (draining)", err)
	}
	hc, err := healthpb.NewHealthClient(dialConn(t, c.p.grpc)).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of the drained node: %v %v; want NOT_SERVING", hc.GetStatus(), err)
	}
	for _, cl := range clients {
		cl.Close()
	}
	for _, nd := range nodes {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Errorf("%s exited %d", nd.name, code)
		}
	}
	s, err := ledger.Open(filepath.Join(a.data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ends := map[string]int{}
	err = s.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
		d := r.Event.GetSessionDisconnected()
		if d == nil || !onC[r.Event.GetSession()] {
			return nil
		}
		ends[r.Event.GetSession()]++
		if d.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_DRAINED || r.Event.GetNode() != "node-c" || d.GetReconnectAfterMs() >= window.Milliseconds() {
			t.Errorf("end of %s: %v on %s; want drained on node-c, reconnect within the window", r.Event.GetSession(), d, r.Event.GetNode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for id := range onC {
		if ends[id] != 1 {
			t.Errorf("session %s of node C has %d ends; want one", id, ends[id])
		}
	}
}
