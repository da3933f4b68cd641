package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/natstest"
	"github.com/sessionledger/sessionledger/internal/stallproxy"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestPartitionedNodeFailsClosedAndEndsNothingTwice: node C's connection
// to NATS is cut while it holds sessions. It fails closed (admin calls and
// connects refused, NOT_SERVING) but keeps its streams; the others see it
// dead and record its sessions lost. When the network heals, C catches up,
// closes each of those sessions telling the client the recorded end, and
// records nothing more: one end per session in every ledger.
func TestPartitionedNodeFailsClosedAndEndsNothingTwice(t *testing.T) {
	const n = 10
	var urls []string
	for _, srv := range natstest.Cluster(t, 3) {
		urls = append(urls, srv.URL)
	}
	proxy := stallproxy.New(t, strings.TrimPrefix(urls[2], "nats://"))
	var nodes []*clusterNode
	for i, url := range []string{urls[0], urls[1], "nats://" + proxy.Addr()} {
		name := fmt.Sprintf("node-%c", 'a'+i)
		nodes = append(nodes, &clusterNode{name: name, data: t.TempDir(),
			flags: []string{"--node", name, "--nats", url, "--replicas", "3", "--cluster-heartbeat", "250ms", "--lost-after", "1500ms"}})
	}
	for _, nd := range nodes {
		nd.launch(t)
	}
	for _, nd := range nodes {
		nd.waitListening(t)
	}
	a, c := nodes[0], nodes[2]
	conn := dialConn(t, c.p.grpc)
	type held struct {
		id  string
		end chan *hubpb.Disconnect
	}
	var sessions []held
	for i := range n {
		st, w := sessionOn(t, conn, fmt.Sprintf("p%02d", i), "d")
		h := held{w.GetSessionId(), make(chan *hubpb.Disconnect, 1)}
		sessions = append(sessions, h)
		go func() {
			for {
				f, err := st.Recv()
				if err != nil {
					close(h.end)
					return
				}
				if d := f.GetDisconnect(); d != nil {
					h.end <- d
				}
			}
		}()
	}

	proxy.Cut()
	cAdmin, cctx := c.admin(t)
	waitFor(t, "node C refuses admin calls while cut off", func() bool {
		_, err := cAdmin.Notify(cctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "from the cut-off node"})
		return status.Code(err) == codes.Unavailable
	})
	if _, err := hello(cctx, conn, "newcomer", "d"); status.Code(err) != codes.Unavailable {
		t.Errorf("connect to the cut-off node: %v; want Unavailable", err)
	}
	hc, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of the cut-off node: %v %v; want NOT_SERVING", hc.GetStatus(), err)
	}
	admin, actx := a.admin(t)
	waitFor(t, "the others record node C's sessions lost", func() bool {
		res, err := admin.ListSessions(actx, &hubpb.ListSessionsRequest{Node: "node-c"})
		return err == nil && len(res.GetSessions()) == 0
	})
	for _, h := range sessions {
		select {
		case d := <-h.end:
			t.Fatalf("session %s ended while its node was cut off (%v): the node cannot know yet", h.id, d)
		default:
		}
	}

	proxy.Heal()
	for _, h := range sessions {
		select {
		case d, ok := <-h.end:
			if !ok || d.GetCode() != hubpb.DisconnectCode_DISCONNECT_CODE_LOST || d.GetEventId() == "" || d.GetReconnect() != hubpb.Reconnect_RECONNECT_ALLOWED {
				t.Errorf("session %s: closed with %v; want lost (the recorded end), its event id, reconnect allowed", h.id, d)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("session %s still open 30 s after the network healed", h.id)
		}
	}
	waitFor(t, "node C serves again", func() bool {
		hc, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
		return err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	for _, nd := range nodes {
		if code := nd.p.signal(syscall.SIGTERM); code != 0 {
			t.Errorf("%s exited %d", nd.name, code)
		}
	}
	for _, nd := range nodes {
		s, err := ledger.Open(filepath.Join(nd.data, "ledger.db"), &ledger.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		ends := map[string]int{}
		err = s.Scan(context.Background(), 1, 0, func(r *ledger.Record) error {
			if d := r.Event.GetSessionDisconnected(); d != nil {
				ends[r.Event.GetSession()]++
				if d.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST || r.Event.GetActor() == "node:node-c" {
					t.Errorf("%s: end of %s: %v by %s; want lost, recorded by a survivor", nd.name, r.Event.GetSession(), d, r.Event.GetActor())
				}
			}
			return nil
		})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range sessions {
			if ends[h.id] != 1 {
				t.Errorf("%s: session %s has %d ends; want exactly one", nd.name, h.id, ends[h.id])
			}
		}
	}
}
