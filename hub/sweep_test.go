package hub_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// heldEnds holds every publish of a session end until release is closed,
// as a log that is slow to take it does; held is closed when the first
// one is waiting.
type heldEnds struct {
	hub.Publisher
	once     sync.Once
	held     chan struct{}
	release  chan struct{}
	inflight atomic.Int32
}

// Err is the wrapped publisher's, so the core still sees a log that
// takes no appends.
func (h *heldEnds) Err() error {
	if e, ok := h.Publisher.(interface{ Err() error }); ok {
		return e.Err()
	}
	return nil
}

func (h *heldEnds) PublishStamped(topic string, msgs ...*message.Message) ([]ledger.Stamp, error) {
	h.inflight.Add(1)
	defer h.inflight.Add(-1)
	for _, m := range msgs {
		var ev eventpb.Event
		if proto.Unmarshal(m.Payload, &ev) == nil && ev.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED {
			h.once.Do(func() { close(h.held) })
			<-h.release
			break
		}
	}
	return h.Publisher.PublishStamped(topic, msgs...)
}

// TestSweepLeavesAnEndingSession: a session whose end is being published
// is not the node's any more, yet the log shows it live until that
// publish returns. However long the publish takes, the orphan sweep must
// leave it to it (Server.ending): the session gets one end, the client's,
// not a "lost" end before it.
func TestSweepLeavesAnEndingSession(t *testing.T) {
	h := &heldEnds{held: make(chan struct{}), release: make(chan struct{})}
	// A tick of 100 ms and a sweep every 500 ms: a session unheld for two
	// sweeps a second apart is due. Once the end's publish returns, only
	// that second covers the projections applying it.
	c := newCore(t, hub.Config{HeartbeatInterval: time.Second, OrphanAfter: time.Second},
		func(p hub.Publisher) hub.Publisher { h.Publisher = p; return h })
	m := newMem(t)
	w, done := c.serve(t, m, "alice")
	close(m.in) // the client leaves
	select {
	case <-h.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the session's end was not published within 5s")
	}
	// Six sweeps or so while the end waits: two make it due.
	time.Sleep(3 * time.Second)
	close(h.release)
	if err := waitServe(t, done); err != nil {
		t.Fatalf("Serve: %v; want nil (the client left)", err)
	}
	// A sweep's end, if one was wrongly due, is in flight or about to be.
	time.Sleep(600 * time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); h.inflight.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	var ends []*eventpb.Event
	err := c.store.BySession(ctxT(t), w.GetSessionId(), 0, 0, func(r *ledger.Record) error {
		if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED {
			ends = append(ends, r.Event)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ends) != 1 || ends[0].GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatalf("ends recorded: %v; want one, the client's (cause client closed)", ends)
	}
}
