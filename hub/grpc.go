package hub

import (
	"context"
	"errors"
	"sync"

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

// ServerOptions returns the interceptors the hub needs on its gRPC server.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(s.UnaryInterceptor), grpc.ChainStreamInterceptor(s.StreamInterceptor)}
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
func (h grpcHub) Connect(stream hubpb.Hub_ConnectServer) error {
	t := newGRPCTransport(h.s, stream)
	return toStatus(h.s.Serve(t))
}

// grpcTransport carries a session over a Hub.Connect stream. A gRPC
// handler must return to end its stream, so the reader is a goroutine of
// its own and Recv waits for it or for Close.
type grpcTransport struct {
	s      *Server
	stream hubpb.Hub_ConnectServer
	remote string

	frames    chan recvResult
	closed    chan struct{}
	closeOnce sync.Once
}

type recvResult struct {
	f   *hubpb.ClientFrame
	err error
}

var _ Transport = (*grpcTransport)(nil)

func newGRPCTransport(s *Server, stream hubpb.Hub_ConnectServer) *grpcTransport {
	t := &grpcTransport{s: s, stream: stream, frames: make(chan recvResult), closed: make(chan struct{})}
	if p, ok := peer.FromContext(stream.Context()); ok && p.Addr != nil {
		t.remote = p.Addr.String()
	}
	go t.read()
	return t
}

// read hands the stream's frames to Recv until the stream ends or the
// transport is closed (the handler then returns, which ends the stream
// and so this goroutine's Recv).
func (t *grpcTransport) read() {
	for {
		f, err := t.stream.Recv()
		select {
		case t.frames <- recvResult{f, grpcRecvErr(err)}:
		case <-t.closed:
			return
		}
		if err != nil {
			return
		}
	}
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

func (t *grpcTransport) Recv() (*hubpb.ClientFrame, error) {
	select {
	case r := <-t.frames:
		return r.f, r.err
	case <-t.closed:
		return nil, errTransportClosed
	}
}

func (t *grpcTransport) Send(f *Frame) error { return t.stream.Send(f.Message()) }

// Close only releases Recv: the handler's return ends the stream with the
// status toStatus makes of the same end.
func (t *grpcTransport) Close(error) { t.closeOnce.Do(func() { close(t.closed) }) }

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
