package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// Register registers the Hub, Admin and health services on g. Create g
// with ServerOptions() so admin calls are authenticated, and serve it with
// Serve so abort-mode kicks can close connections.
func (s *Server) Register(g *grpc.Server) {
	s.mu.Lock()
	s.grpcSrv = g
	s.mu.Unlock()
	hubpb.RegisterHubServer(g, grpcHub{s: s})
	hubpb.RegisterAdminServer(g, &admin{s: s})
	healthpb.RegisterHealthServer(g, s.health)
}

// ServerOptions returns the interceptors the hub needs on its gRPC server,
// and its codec: the standard protobuf one, except that a server frame
// fanned out to many sessions is encoded once (frameCodec).
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.UnaryInterceptor), grpc.ChainStreamInterceptor(s.StreamInterceptor),
		grpc.ForceServerCodecV2(newFrameCodec())}
}

// ServeGRPC serves g on l, tracking connections so abort-mode kicks can
// close them. It returns when g stops.
func (s *Server) ServeGRPC(g *grpc.Server, l *Listener) error {
	s.mu.Lock()
	s.lis = l
	s.mu.Unlock()
	return g.Serve(l)
}

// grpcHub is the Hub service: the gRPC transport of the session core.
type grpcHub struct {
	hubpb.UnimplementedHubServer
	s *Server
}

// Connect serves one client session over a bidirectional stream. The
// stream's status carries the end: the Disconnect as a detail when the
// server ended it, the Rejection when the connect was refused.
//
// A gRPC handler must return to end its stream, and a Recv cannot be
// interrupted without gRPC writing a status of its own, so the session
// core runs on a goroutine of its own, reading the stream directly, while
// the handler waits for the core to close the transport and then returns
// the end it was given. Its return ends the stream, and so the core's
// Recv. One hop per client frame: gRPC's reader hands the frame to the
// core's goroutine, which handles it where it was decoded.
func (h grpcHub) Connect(stream hubpb.Hub_ConnectServer) error {
	t := newGRPCTransport(h.s, stream)
	go h.s.Serve(t) //nolint:errcheck // its end reaches the handler through Close
	t.released.Wait()
	return toStatus(t.end)
}

// grpcTransport carries a session over a Hub.Connect stream.
type grpcTransport struct {
	s      *Server
	stream hubpb.Hub_ConnectServer
	remote string

	// Close sets closed, then end, then releases the handler, which
	// returns end. (A flag and a WaitGroup rather than a channel: they live
	// inside the struct, where a channel is one more allocation for every
	// idle session.)
	closed   atomic.Bool
	end      error
	released sync.WaitGroup
}

var _ Transport = (*grpcTransport)(nil)

func newGRPCTransport(s *Server, stream hubpb.Hub_ConnectServer) *grpcTransport {
	t := &grpcTransport{s: s, stream: stream}
	t.released.Add(1)
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		t.remote = p.Addr.String()
	}
	return t
}

// grpcRecvErr maps what gRPC says of a frame it could not take onto the
// core's terms. For these two gRPC has already ended the stream with its
// own status (the handler's is ignored): the client sees
// ResourceExhausted or Internal, and the ledger records the reason.
func grpcRecvErr(err error) error {
	if err == nil {
		return nil
	}
	switch st, _ := status.FromError(err); st.Code() {
	case codes.ResourceExhausted:
		return &ProtocolError{Reason: "frame too large: " + st.Message(), Err: err}
	case codes.Internal:
		return &ProtocolError{Reason: "malformed frame: " + st.Message(), Err: err}
	case codes.Canceled:
		return context.Canceled
	}
	return err
}

// Name is the transport recorded in the session's connect event.
func (t *grpcTransport) Name() string { return TransportGRPC }

func (t *grpcTransport) Context() context.Context { return t.stream.Context() }

func (t *grpcTransport) Remote() string { return t.remote }

// Recv reads the stream. After Close it fails at once; a Recv already
// waiting returns when the handler's return ends the stream.
func (t *grpcTransport) Recv() (*hubpb.ClientFrame, error) {
	if t.closed.Load() {
		return nil, errTransportClosed
	}
	f, err := t.stream.Recv()
	return f, grpcRecvErr(err)
}

// Send writes f's protobuf encoding, made once however many sessions f
// goes to (frameCodec).
func (t *grpcTransport) Send(f *Frame) error { return t.stream.SendMsg(f) }

// Close releases the handler, which returns the status toStatus makes of
// end; that ends the stream.
func (t *grpcTransport) Close(end error) {
	if t.closed.CompareAndSwap(false, true) {
		t.end = end
		t.released.Done()
	}
}

// Abort closes the client's TCP connection through the tracking Listener,
// ending every stream on it.
func (t *grpcTransport) Abort() {
	t.s.mu.Lock()
	l := t.s.lis
	t.s.mu.Unlock()
	if l != nil {
		l.abort(t.remote)
	}
}

// errTransportClosed is what Recv returns once the session's end closed
// its transport.
var errTransportClosed = errors.New("transport closed")
