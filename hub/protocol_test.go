package hub_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// rawCodec sends bytes as they are, so a test can put anything in a gRPC
// message frame; it registers under the name "proto" so the server reads
// the frames as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return v.([]byte), nil }
func (rawCodec) Unmarshal(b []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), b...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// rawStream opens Hub.Connect and sends its frames as given.
func (e *env) rawStream() grpc.ClientStream {
	e.t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	st, err := conn.NewStream(ctxT(e.t), &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, "/sessionledger.hub.v1.Hub/Connect", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// rawEnd reads raw frames until the stream ends and returns its status.
func rawEnd(st grpc.ClientStream) *status.Status {
	for {
		var b []byte
		if err := st.RecvMsg(&b); err != nil {
			if errors.Is(err, io.EOF) {
				return status.New(codes.OK, "")
			}
			return status.Convert(err)
		}
	}
}

// garbage is not a protobuf message: field 15, wire type 7 (invalid).
var garbage = []byte{0xff, 0xff, 0xff, 0xff}

// TestGarbageFrames: bytes that are not a ClientFrame end the stream (gRPC
// answers Internal itself): as the first frame nothing is recorded,
// mid-session the end is recorded as a protocol error.
func TestGarbageFrames(t *testing.T) {
	e := newEnv(t, hub.Config{})
	st := e.rawStream()
	if err := st.SendMsg(garbage); err != nil {
		t.Fatal(err)
	}
	if s := rawEnd(st); s.Code() != codes.Internal || !strings.Contains(s.Message(), "unmarshal") {
		t.Fatalf("garbage first frame: %v; want Internal, failed to unmarshal", s)
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("a garbage first frame recorded %d events", h)
	}

	st = e.rawStream()
	hello, _ := proto.Marshal(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "garb", Device: "d"}}})
	if err := st.SendMsg(hello); err != nil {
		t.Fatal(err)
	}
	var b []byte
	if err := st.RecvMsg(&b); err != nil {
		t.Fatal(err)
	}
	var f hubpb.ServerFrame
	if err := proto.Unmarshal(b, &f); err != nil || f.GetWelcome() == nil {
		t.Fatalf("first frame %v (%v); want Welcome", &f, err)
	}
	id := f.GetWelcome().GetSessionId()
	if err := st.SendMsg(garbage); err != nil {
		t.Fatal(err)
	}
	if s := rawEnd(st); s.Code() != codes.Internal || !strings.Contains(s.Message(), "unmarshal") {
		t.Fatalf("garbage mid-session: %v; want Internal, failed to unmarshal", s)
	}
	e.waitEvent(1, "the end of the garbled session", disconnectOf(id))
	e.expectLedger(1,
		"session_connected garb/d "+id,
		"session_disconnected garb/d "+id+" client_closed by garb: protocol error: malformed frame: *")
}

// TestOversizedFrameMidSession: a frame over the message size after the
// Welcome ends the stream with ResourceExhausted, recorded as a protocol
// error (not "client closed").
func TestOversizedFrameMidSession(t *testing.T) {
	e := newEnv(t, hub.Config{})
	c := e.mustDial("big", "d")
	_ = c.stream.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Goodbye{Goodbye: &hubpb.Goodbye{Reason: strings.Repeat("x", 100<<10)}}})
	if d, st := c.expectEnd(); d != nil || st.Code() != codes.ResourceExhausted {
		t.Fatalf("oversized frame mid-session: %v %v; want ResourceExhausted", d, st)
	}
	id := c.welcome.GetSessionId()
	e.waitEvent(1, "the end", disconnectOf(id))
	e.expectLedger(1,
		"session_connected big/d "+id,
		"session_disconnected big/d "+id+" client_closed by big: protocol error: frame too large: *")
}

// TestAbortClosesSharedConnection: an abort kick closes the client's whole
// connection; another session on it ends too, recorded with the abort
// that closed it (reason and the kick's event id), not as a plain client
// close.
func TestAbortClosesSharedConnection(t *testing.T) {
	e := newEnv(t, hub.Config{})
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	a, aw := helloOn(t, conn, "ab1")
	b, bw := helloOn(t, conn, "ab2")
	aID, bID := aw.GetSessionId(), bw.GetSessionId()
	rep, err := e.admin.Kick(adminCtx(context.Background()), &hubpb.KickRequest{User: "ab1", Reason: "abort", Mode: hubpb.KickMode_KICK_MODE_ABORT})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []hubpb.Hub_ConnectClient{a, b} {
		for {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
	}
	e.waitEvent(1, "the other session's end", disconnectOf(bID))
	kick := rep.GetEventId()
	e.expectLedger(1,
		"session_connected ab1/d "+aID,
		"session_connected ab2/d "+bID,
		"kick_requested ab1 by ops-alice: abort",
		"session_disconnected ab1/d "+aID+" kicked "+kick+" by ops-alice: abort",
		"session_disconnected ab2/d "+bID+" client_closed "+kick+" by ops-alice: transport closed by abort of session "+aID+" (kicked "+kick+")")
	if e.events(1)[4].Event.GetSessionDisconnected().GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED {
		t.Fatal("the shared session's cause is not client_closed")
	}
}
