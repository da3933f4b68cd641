package hub

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// The WebSocket subprotocols: the frames are hub.proto's ClientFrame and
// ServerFrame, one per message, as protobuf in binary messages or as the
// canonical protobuf JSON mapping in text messages.
const (
	SubprotocolProto = "sessionledger.v1+proto"
	SubprotocolJSON  = "sessionledger.v1+json"
)

// Transport names recorded in connect events (SessionConnected.transport).
const (
	TransportGRPC    = "grpc"
	TransportWSProto = "websocket+proto"
	TransportWSJSON  = "websocket+json"
)

// WebSocketConfig configures the WebSocket transport. Zero values take the
// defaults.
type WebSocketConfig struct {
	// AllowedOrigins are the Origin values browsers may connect from
	// besides pages served by the host the client connected to (the
	// Origin's host equals the request's Host), as "scheme://host[:port]"
	// (compared without regard to case), or "*" for any. A client that sends no
	// Origin is not a browser and is let in: the check protects a
	// browser's user from pages of other sites, not the server from
	// clients, which must present a token like any other.
	AllowedOrigins []string
	// ReadLimit is the largest message a client may send, in bytes
	// (default hubapi.DefaultMaxMessageSize). A larger one ends the
	// session with close code 1009.
	ReadLimit int
	// HandshakeTimeout bounds writing the upgrade's response (default
	// 10s); the HTTP server's ReadHeaderTimeout bounds reading the request,
	// and the hub's HelloTimeout the wait for Hello after it.
	HandshakeTimeout time.Duration
	// CloseTimeout is how long the server waits for the client's close
	// frame after sending its own, before it closes the TCP connection
	// (default 1s). Closing at once could reset a connection whose client
	// is still sending, and a reset loses the close code on the way.
	CloseTimeout time.Duration
}

func (c *WebSocketConfig) setDefaults() {
	if c.ReadLimit <= 0 {
		c.ReadLimit = hubapi.DefaultMaxMessageSize
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = time.Second
	}
}

// WebSocket is the WebSocket transport of the session core: an
// http.Handler for the connect endpoint (hubd serves it at /connect).
// Each upgraded connection is one session, served by Server.Serve with
// the same rules as a gRPC stream.
//
// A session costs one goroutine: the handler hands the connection to a
// goroutine that reads it (Serve's loop) and returns, so net/http lets go
// of its per-request state and buffers; sends come from the session
// core's short-lived workers.
type WebSocket struct {
	s       *Server
	cfg     WebSocketConfig
	up      websocket.Upgrader
	origins map[string]bool
	anyOrig bool

	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup // one per connection being served
}

var _ http.Handler = (*WebSocket)(nil)

// NewWebSocket returns the WebSocket transport of s.
func (s *Server) NewWebSocket(cfg WebSocketConfig) (*WebSocket, error) {
	cfg.setDefaults()
	w := &WebSocket{s: s, cfg: cfg, origins: make(map[string]bool)}
	for _, o := range cfg.AllowedOrigins {
		if o == "*" {
			w.anyOrig = true
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return nil, fmt.Errorf("allowed origin %q: want scheme://host[:port] or *", o)
		}
		w.origins[strings.ToLower(u.Scheme+"://"+u.Host)] = true
	}
	w.up = websocket.Upgrader{
		HandshakeTimeout: cfg.HandshakeTimeout,
		// A small read buffer of the connection's own (bufio, grows no
		// further; larger messages are read through it) instead of
		// net/http's 4 KiB one, and no write buffer (Send writes framed
		// messages itself; the pool keeps gorilla from holding on to
		// net/http's): an idle session holds 512 bytes of buffers.
		ReadBufferSize:  512,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{SubprotocolProto, SubprotocolJSON},
		// ServeHTTP has checked the Origin already, and recorded a refusal.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return w, nil
}

// HandshakeTimeout is the time the upgrade's response is given
// (WebSocketConfig.HandshakeTimeout, defaults applied); hubd gives reading
// the upgrade request as much.
func (w *WebSocket) HandshakeTimeout() time.Duration { return w.cfg.HandshakeTimeout }

// ServeHTTP upgrades a connect request to a WebSocket and serves its
// session. A request from a browser page of an origin that is not allowed
// is refused with 403 and recorded as connect_rejected (origin_refused); a
// request that offers neither subprotocol is refused with 400.
func (w *WebSocket) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(rw, "this is the sessionledger WebSocket endpoint: connect with a WebSocket client offering subprotocol "+
			SubprotocolProto+" or "+SubprotocolJSON, http.StatusUpgradeRequired)
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !w.originAllowed(origin, r.Host) {
		reason := fmt.Sprintf("origin %q is not allowed to connect (hubd --ws-allowed-origins)", truncate(origin, hubapi.MaxNameBytes))
		_ = w.s.reject("", "", r.RemoteAddr, &Rejection{Code: RejectOrigin, Reason: reason, Reconnect: eventpb.Reconnect_RECONNECT_NOT_ALLOWED})
		http.Error(rw, reason, http.StatusForbidden)
		return
	}
	sub := ""
	for _, p := range websocket.Subprotocols(r) {
		if p == SubprotocolProto || p == SubprotocolJSON {
			sub = p
			break
		}
	}
	if sub == "" {
		http.Error(rw, "offer WebSocket subprotocol "+SubprotocolProto+" (protobuf, binary messages) or "+SubprotocolJSON+" (protobuf JSON, text messages)", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		http.Error(rw, ErrShuttingDown.Error(), http.StatusServiceUnavailable)
		return
	}
	w.wg.Add(1)
	w.mu.Unlock()
	c, err := w.up.Upgrade(rw, r, nil)
	if err != nil {
		w.wg.Done() // the upgrader answered the client with an HTTP error
		return
	}
	go w.serve(c, r.RemoteAddr)
}

// serve runs one session over c, then finishes the close handshake.
func (w *WebSocket) serve(c *websocket.Conn, remote string) {
	defer w.wg.Done()
	t := newWSTransport(c, remote, w.cfg)
	_ = w.s.Serve(t)
	t.finish()
}

// Close refuses new connects; Wait waits for the connections being served
// to end. Shut the hub down between the two: it ends every session.
func (w *WebSocket) Close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// Wait waits until every connection this transport served has ended, or
// ctx ends.
func (w *WebSocket) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("websocket connections still open: %w", ctx.Err())
	}
}

// originAllowed reports whether a page of origin may connect to host.
func (w *WebSocket) originAllowed(origin, host string) bool {
	if w.anyOrig {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	// Pages served by the host the client connected to (the demo page)
	// are always let in; the list adds other origins.
	return strings.EqualFold(u.Host, host) || w.origins[strings.ToLower(u.Scheme+"://"+u.Host)]
}

// wsTransport carries one session over a WebSocket connection.
type wsTransport struct {
	c            *websocket.Conn
	nc           net.Conn // c's connection: Send writes whole messages to it
	name         string
	msgType      int // websocket.BinaryMessage or TextMessage
	limit        int64
	closeTimeout time.Duration
	remote       string
	ctx          context.Context
	cancel       context.CancelFunc

	readMu    sync.Mutex // one read at a time: Recv, then finish's drain
	writeMu   sync.Mutex // Send and Close's Rejected frame
	closed    atomic.Bool
	closeSent atomic.Bool
	peerClose atomic.Bool // the client's close frame arrived
}

var _ Transport = (*wsTransport)(nil)

func newWSTransport(c *websocket.Conn, remote string, cfg WebSocketConfig) *wsTransport {
	t := &wsTransport{c: c, nc: c.NetConn(), name: TransportWSProto, msgType: websocket.BinaryMessage, limit: int64(cfg.ReadLimit),
		closeTimeout: cfg.CloseTimeout, remote: remote}
	if c.Subprotocol() == SubprotocolJSON {
		t.name, t.msgType = TransportWSJSON, websocket.TextMessage
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	// A client's ping is answered on Send's path, not gorilla's: gorilla's
	// control writes set a write deadline that Send's writes would inherit.
	c.SetPingHandler(func(data string) error {
		t.writeMu.Lock()
		defer t.writeMu.Unlock()
		_, err := t.nc.Write(appendWSFrame(nil, websocket.PongMessage, []byte(data)))
		return err
	})
	c.SetCloseHandler(func(code int, _ string) error {
		t.peerClose.Store(true)
		if t.closeSent.CompareAndSwap(false, true) {
			// The client closes first: answer with its code, as RFC
			// 6455 asks (gorilla's default, kept).
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(t.closeTimeout))
		}
		return nil
	})
	return t
}

// Name is the transport recorded in the session's connect event.
func (t *wsTransport) Name() string { return t.name }

func (t *wsTransport) Context() context.Context { return t.ctx }

func (t *wsTransport) Remote() string { return t.remote }

// Wire-level protocol errors, told apart by the close code.
var (
	errWSTooLarge  = errors.New("message too large")
	errWSWrongType = errors.New("wrong message type")
	errWSMalformed = errors.New("malformed message")
)

func (t *wsTransport) Recv() (*hubpb.ClientFrame, error) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	if t.closed.Load() {
		return nil, errTransportClosed
	}
	mt, r, err := t.c.NextReader()
	if err != nil {
		return nil, t.readErr(err)
	}
	// Read at most one byte over the limit: a client that announces a
	// huge message never makes the server hold more than the limit.
	data, err := io.ReadAll(io.LimitReader(r, t.limit+1))
	if err != nil {
		return nil, t.readErr(err)
	}
	if int64(len(data)) > t.limit {
		return nil, &ProtocolError{Reason: fmt.Sprintf("frame too large: over %d bytes", t.limit), Err: errWSTooLarge}
	}
	if mt != t.msgType {
		if t.msgType == websocket.BinaryMessage {
			return nil, &ProtocolError{Reason: "text message under subprotocol " + SubprotocolProto + " (binary protobuf messages only)", Err: errWSWrongType}
		}
		return nil, &ProtocolError{Reason: "binary message under subprotocol " + SubprotocolJSON + " (text JSON messages only)", Err: errWSWrongType}
	}
	f := &hubpb.ClientFrame{}
	if t.msgType == websocket.BinaryMessage {
		err = proto.Unmarshal(data, f)
	} else {
		err = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(data, f)
	}
	if err != nil {
		return nil, &ProtocolError{Reason: "malformed frame: " + err.Error(), Err: errWSMalformed}
	}
	return f, nil
}

// readErr maps a failed read onto the core's terms: the client's close is
// io.EOF, a read cut short by Close is errTransportClosed, anything else
// means the connection is gone.
func (t *wsTransport) readErr(err error) error {
	if t.closed.Load() {
		return errTransportClosed
	}
	t.cancel()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		switch ce.Code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived:
			return io.EOF
		}
		return fmt.Errorf("client closed the connection with code %d %q", ce.Code, ce.Text)
	}
	return err
}

// Send writes the frame's WebSocket message, framed once for every
// connection it goes to, straight to the TCP connection: one write, no
// per-session copy. gorilla writes only control frames here (the close),
// each in one write of its own, so the two never interleave.
func (t *wsTransport) Send(f *Frame) error {
	b, err := f.wsMessage(t.msgType == websocket.TextMessage)
	if err != nil {
		return err
	}
	t.writeMu.Lock()
	defer t.writeMu.Unlock()
	_, err = t.nc.Write(b)
	return err
}

// wsMessage is f as one unmasked WebSocket message (server frames are
// never masked, so the bytes are the same for every connection): binary
// protobuf, or text JSON. Made at most once per format.
func (f *Frame) wsMessage(text bool) ([]byte, error) {
	i, op := 0, byte(websocket.BinaryMessage)
	if text {
		i, op = 1, byte(websocket.TextMessage)
	}
	return f.ws[i].get(func() ([]byte, error) {
		var payload []byte
		var err error
		if text {
			payload, err = f.JSON()
		} else {
			payload, err = f.Proto()
		}
		if err != nil {
			return nil, err
		}
		return appendWSFrame(nil, op, payload), nil
	})
}

// appendWSFrame appends a final, unmasked frame of opcode op (RFC 6455,
// 5.2) carrying payload.
func appendWSFrame(b []byte, op byte, payload []byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, payload...)
}

// Close tells the client how its session ended: a refused connect gets its
// Rejected frame first, then every end gets a close frame whose code
// carries the meaning (docs/api.md, WebSocket close codes) and whose
// reason is the end's, truncated to fit. The read still waiting returns
// once the client answers with its close frame, or after CloseTimeout.
func (t *wsTransport) Close(end error) {
	if !t.closed.CompareAndSwap(false, true) {
		return
	}
	deadline := time.Now().Add(t.closeTimeout)
	var rj *Rejection
	if errors.As(end, &rj) {
		_ = t.nc.SetWriteDeadline(deadline)
		_ = t.Send(NewFrame(&hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Rejected{Rejected: rj.wire()}}))
	}
	code, reason := CloseCode(end)
	if t.closeSent.CompareAndSwap(false, true) {
		_ = t.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, closeReason(reason)), deadline)
	}
	_ = t.c.SetReadDeadline(deadline)
}

// Abort closes the TCP connection at once: no close frame, no handshake.
func (t *wsTransport) Abort() {
	t.cancel()
	_ = t.c.NetConn().Close()
}

// finish completes the close handshake once Serve returned: it waits for
// any read still in flight (a Hello that never came), reads until the
// client's close frame (or the close deadline), and closes the
// connection.
func (t *wsTransport) finish() {
	t.readMu.Lock()
	if t.closeSent.Load() && !t.peerClose.Load() {
		for {
			if _, _, err := t.c.NextReader(); err != nil {
				break
			}
		}
	}
	t.readMu.Unlock()
	t.cancel()
	_ = t.c.NetConn().Close()
}

// maxCloseReason is what a close frame holds after its code: a control
// frame's payload is at most 125 bytes.
const maxCloseReason = 123

// closeReason truncates s to what a close frame holds, on a rune boundary.
func closeReason(s string) string { return truncate(s, maxCloseReason) }

// truncate cuts s to at most n bytes without splitting a rune.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// WebSocket close codes (docs/api.md has the table). 4000–4499: the client
// may reconnect (after the delay its Disconnect or Rejected frame gives);
// 4500–4999: it must not. A session the server ended is 4000 + its
// DisconnectCode (4500 + when reconnecting is not allowed, and always for
// superseded: coming back would throw out the newer login); a refused
// connect is 4100 + a code of its own (4600 + when not allowed). Errors of
// the WebSocket protocol itself use RFC 6455's codes.
const (
	CloseNormal        = websocket.CloseNormalClosure           // 1000: the client left (Goodbye or its close)
	CloseProtocol      = websocket.CloseProtocolError           // 1002: a frame out of place (first not Hello, Hello twice, names too long)
	CloseWrongType     = websocket.CloseUnsupportedData         // 1003: text under the binary subprotocol, or binary under the JSON one
	CloseMalformed     = websocket.CloseInvalidFramePayloadData // 1007: a message that is not a ClientFrame
	CloseTooLarge      = websocket.CloseMessageTooBig           // 1009: a message over the read limit
	CloseInternal      = websocket.CloseInternalServerErr       // 1011: anything else
	CloseEndedBase     = 4000                                   // + DisconnectCode: ended, may reconnect
	CloseRefusedBase   = 4100                                   // + refusal code: refused, may retry
	CloseNotAllowedAdd = 500                                    // added when the client must not come back
)

// Refusal codes of a connect, added to CloseRefusedBase.
const (
	closeRateLimited   = 1
	closeNodeFull      = 2
	closeResumeRefused = 3
	closeBanned        = 4
	closeShuttingDown  = 5
	closeUnavailable   = 6 // the ledger cannot record: the hub fails closed
	closeUnauth        = 7
	closeNoHello       = 8
	closeRevoked       = 9  // the client's token is revoked
	closeKicked        = 10 // a kick still refuses this user and device (or token)
	closeDraining      = 11 // the node is drained: connect to another one
)

// CloseCode is the WebSocket close code and reason for a session's end, as
// Serve returns it: nil (the client left), a *Disconnect, a *Rejection, or
// an error of a refused or broken connect.
func CloseCode(end error) (int, string) {
	if end == nil {
		return CloseNormal, ""
	}
	var d *Disconnect
	if errors.As(end, &d) {
		code := CloseEndedBase + int(causeCodes[d.Cause])
		if d.Reconnect == eventpb.Reconnect_RECONNECT_NOT_ALLOWED || d.Cause == CauseSuperseded {
			code += CloseNotAllowedAdd
		}
		return code, d.Reason
	}
	var rj *Rejection
	if errors.As(end, &rj) {
		n := map[string]int{RejectRateLimited: closeRateLimited, RejectNodeFull: closeNodeFull,
			RejectResumeRefused: closeResumeRefused, RejectBanned: closeBanned, RejectRevoked: closeRevoked,
			RejectKicked: closeKicked, RejectDraining: closeDraining}[rj.Code]
		code := CloseRefusedBase + n
		if rj.Reconnect == eventpb.Reconnect_RECONNECT_NOT_ALLOWED {
			code += CloseNotAllowedAdd
		}
		return code, rj.Code + ": " + rj.Reason
	}
	var pe *ProtocolError
	switch {
	case errors.Is(end, errWSTooLarge):
		return CloseTooLarge, end.Error()
	case errors.Is(end, errWSWrongType):
		return CloseWrongType, end.Error()
	case errors.Is(end, errWSMalformed):
		return CloseMalformed, end.Error()
	case errors.As(end, &pe), errors.Is(end, ErrInvalid):
		return CloseProtocol, end.Error()
	case errors.Is(end, ErrUnauthenticated):
		return CloseRefusedBase + CloseNotAllowedAdd + closeUnauth, ErrUnauthenticated.Error()
	case errors.Is(end, ErrNoHello):
		return CloseRefusedBase + closeNoHello, end.Error()
	case errors.Is(end, ErrShuttingDown):
		return CloseRefusedBase + closeShuttingDown, end.Error()
	case errors.Is(end, ErrLedger), errors.Is(end, ledger.ErrClosed):
		return CloseRefusedBase + closeUnavailable, end.Error()
	}
	return CloseInternal, end.Error()
}
