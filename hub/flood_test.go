package hub_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// TestSlowClientFloodStaysBounded: clients, each on a connection of its
// own, stop reading while notify-alls flood them. What the hub holds for
// them stays bounded per connection — gRPC's flow-control window and write
// quota, and references to frames every session shares (each notification
// is encoded once), up to NotifyBuffer of them — not a copy of the flood
// per connection. Past NotifyBuffer each ends as a slow consumer, recorded.
func TestSlowClientFloodStaysBounded(t *testing.T) {
	const clients, notes, size, buffer = 16, 48, 32 << 10, 64
	e := newEnv(t, hub.Config{NotifyBuffer: buffer, GracefulTimeout: 200 * time.Millisecond})
	ctx := ctxT(t)
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	var ids []string
	for i := range clients {
		// 64 KiB windows, as hub/client dials; the stream is never read
		// after its Welcome.
		conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithStaticStreamWindowSize(1<<16), grpc.WithStaticConnWindowSize(1<<16))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, w := helloOn(t, conn, fmt.Sprintf("slow-%02d", i))
		ids = append(ids, w.GetSessionId())
	}
	before := heap()
	payload := make([]byte, size)
	notify := func(n int) uint64 {
		var seq uint64
		for range n {
			rep, err := e.admin.Notify(adminCtx(ctx), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "flood", Payload: payload})
			if err != nil {
				t.Fatal(err)
			}
			seq = rep.GetSeq()
		}
		return seq
	}
	first := notify(notes)
	// Every session is stuck in a Send or queued behind one; none is over
	// its buffer yet.
	time.Sleep(100 * time.Millisecond)
	if got := e.srv.Live(); got != clients {
		t.Fatalf("%d sessions live after %d notifications; want all %d (queues hold %d)", got, notes, clients, buffer)
	}
	grown := int64(heap()) - int64(before)
	// A copy of the flood per connection would be clients × notes × size
	// (24 MiB); the flood itself is held a few times over (the frames, the
	// ring of recent notify-alls a resume reads), plus per connection at
	// most its windows' worth in gRPC.
	if limit := int64(4*notes*size + clients*4<<16); grown > limit {
		t.Fatalf("heap grew by %d KiB while %d clients did not read %d notifications of %d KiB; want at most %d KiB",
			grown>>10, clients, notes, size>>10, limit>>10)
	}
	t.Logf("heap grew by %d KiB (a copy per connection would be %d KiB)", grown>>10, clients*notes*size>>10)

	notify(buffer) // over every queue: each session ends as a slow consumer
	for _, id := range ids {
		end := e.waitEnd(first, id)
		if c := end.Event.GetSessionDisconnected().GetCause(); c != eventpb.DisconnectCause_DISCONNECT_CAUSE_SLOW_CONSUMER {
			t.Fatalf("session %s ended %v; want slow_consumer", id, c)
		}
	}
}
