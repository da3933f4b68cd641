package hub

import (
	"context"
	"sync"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// Transport carries one session's frames between a client and the session
// core (Server.Serve), which holds every rule: admission, policy,
// enforcement, heartbeats, resume, slow consumers. A transport only moves
// frames and maps the end of a session onto its own close semantics.
//
// The core calls Recv from one goroutine at a time and Send from one
// goroutine at a time (never two Sends at once); Close and Abort may come
// from any goroutine, concurrently with both.
type Transport interface {
	// Context ends when the client's connection is gone.
	Context() context.Context
	// Recv returns the next client frame. After Close it returns an
	// error at once.
	Recv() (*hubpb.ClientFrame, error)
	// Send writes one server frame. It may block while the client does not
	// read; Abort makes it return.
	Send(f *Frame) error
	// Close tells the client how its session ended, in the transport's own
	// terms (for example a WebSocket close code), and makes Recv return.
	// end is what Serve returns: nil when the client left, a *Disconnect
	// when the server ended the session, another error for a refused or
	// broken connect. The core calls it once, after the end is recorded.
	Close(end error)
	// Abort closes the client's connection at once, without a frame or a
	// close handshake: an abort-mode kick, or a client that does not take
	// its Disconnect within the graceful timeout.
	Abort()
	// Remote is the client's address ("" if unknown). Sessions that share
	// a remote share a connection: aborting one ends them all.
	Remote() string
}

// namer is a transport that names itself in the session's connect event
// (SessionConnected.transport): TransportGRPC, TransportWSProto, ... A
// transport without a name is recorded with none.
type namer interface {
	Name() string
}

// Frame is one server frame on its way to one or many sessions. Its
// encodings are made at most once each, however many sessions it goes to:
// a notification fanned out to N sessions is encoded once, not N times.
type Frame struct {
	msg *hubpb.ServerFrame

	pb, json lazyBytes
	// The WebSocket transport's complete messages (websocket.go): [0]
	// binary protobuf, [1] text JSON, framed once for every connection.
	ws [2]lazyBytes
}

// lazyBytes is bytes made at most once, and the error making them gave.
type lazyBytes struct {
	once sync.Once
	b    []byte
	err  error
}

// get returns the bytes, made by fn the first time.
func (e *lazyBytes) get(fn func() ([]byte, error)) ([]byte, error) {
	e.once.Do(func() { e.b, e.err = fn() })
	return e.b, e.err
}

// NewFrame wraps m. m must not change afterwards.
func NewFrame(m *hubpb.ServerFrame) *Frame { return &Frame{msg: m} }

// Message is the frame as a message.
func (f *Frame) Message() *hubpb.ServerFrame { return f.msg }

// Proto is the frame's protobuf encoding, made once.
func (f *Frame) Proto() ([]byte, error) {
	return f.pb.get(func() ([]byte, error) { return proto.Marshal(f.msg) })
}

// JSON is the frame's canonical protobuf JSON encoding, made once.
func (f *Frame) JSON() ([]byte, error) {
	return f.json.get(func() ([]byte, error) { return protojson.Marshal(f.msg) })
}
