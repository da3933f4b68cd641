package client

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// Option configures Dial.
type Option func(*config)

type config struct {
	user, device, token string
	dialOpts            []grpc.DialOption
	tls                 *tls.Config
	conn                *grpc.ClientConn
	logger              *slog.Logger

	autoAck      bool
	reconnect    bool
	backoff      Backoff
	maxAttempts  int
	maxWait      time.Duration
	buffer       int
	closeTimeout time.Duration
	ackInterval  time.Duration
	resume       *Resume

	onNotification func(Notification)
	onDisconnect   func(Disconnect)
	onConnect      func(Session)
	onFrame        func(*hubpb.ServerFrame)
	tokenSource    func(ctx context.Context) (string, error)

	sleep func(ctx context.Context, d time.Duration) error
	rand  func() float64
}

func defaultConfig() config {
	return config{
		reconnect:    true,
		buffer:       64,
		closeTimeout: 5 * time.Second,
		ackInterval:  defaultAckInterval,
		logger:       slog.New(slog.DiscardHandler),
		sleep:        sleepCtx,
		rand:         rand.Float64,
	}
}

func (c *config) validate() error {
	if c.user == "" && c.token == "" && c.tokenSource == nil {
		return errors.New("client: a user (WithUser), a token (WithToken) or a token source (WithTokenRefresh) is required")
	}
	if c.buffer < 0 {
		return errors.New("client: negative notification buffer")
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// WithUser sets the user and device sent in Hello. Against a server with a
// JWT secret they may be left empty (the token names them) and, if set,
// must match the token.
func WithUser(user, device string) Option {
	return func(c *config) { c.user, c.device = user, device }
}

// WithToken sets the JWT sent in Hello (hubctl token mints one).
func WithToken(jwt string) Option {
	return func(c *config) { c.token = jwt }
}

// WithTokenRefresh gives the client a source of fresh tokens (the
// application's: it asks its identity provider). The server ends a
// session when its token expires; with a source the client asks it for a
// fresh token ahead of the expiry the server announced (a fifth of the
// token's life before, at least a second, at most five minutes) and sends
// it in the stream (a Refresh frame), so the session goes on. If the
// source fails or the server refuses the token, the client tries again
// halfway to the expiry. It also asks the source for the first token when
// WithToken is not given, and for a fresh one before reconnecting when the
// current one has expired or is about to. fn runs on a goroutine of its
// own; ctx ends when the token expires or the client closes.
func WithTokenRefresh(fn func(ctx context.Context) (string, error)) Option {
	return func(c *config) { c.tokenSource = fn }
}

// WithTLS connects over TLS with cfg. Without it (and without transport
// credentials in WithDialOptions) the connection is plaintext, which hubd
// accepts on loopback.
func WithTLS(cfg *tls.Config) Option {
	return func(c *config) { c.tls = cfg }
}

// WithDialOptions adds gRPC dial options (they override the client's own:
// transport credentials and DialOptions — keepalive, by default a ping
// after 20s without a frame, the connection dropped if it is not answered
// within 10s, and the connect backoff, capped at Backoff.Max).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *config) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithConn uses an existing connection instead of dialling; Close leaves
// it open. The address given to Dial is then ignored. The connection's
// keepalive is then the application's: when a stream goes silent the
// client ends it and reconnects (see doc.go), but over the same
// connection, which it cannot replace; dial it with DialOptions (or
// other keepalive parameters) so that gRPC drops a dead one, or, when the
// connection is the client's alone, let the client dial (Dial with the
// address, WithTLS) so it gets keepalive and a new connection after a
// silent one.
func WithConn(conn *grpc.ClientConn) Option {
	return func(c *config) { c.conn = conn }
}

// WithLogger logs connects, disconnects and reconnect decisions to l
// (default: nothing is logged).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithAutoAck acknowledges each notification as soon as it has been handed
// to the application. With OnNotification that is once the callback
// returned: after processing, as far as the client can tell. With the
// Notifications channel it is when the notification is put into the
// channel, before the application has received it, let alone processed
// it: a process that crashes loses the notifications acknowledged but not
// yet processed, up to the channel's capacity (WithBuffer, 64 by default)
// plus the one in hand, since a resume (WithResume) only redelivers what
// came after the last acknowledged seq. (Acking only once the application
// takes the next one would not be exact either: the client cannot see
// when a buffered channel is read, or how many goroutines read it.)
// Without it, call Client.Ack after processing; for at-least-once
// processing, do that or use OnNotification.
func WithAutoAck() Option {
	return func(c *config) { c.autoAck = true }
}

// WithReconnect turns automatic reconnection on or off (default on). Off,
// the first end of the session ends the client.
func WithReconnect(on bool) Option {
	return func(c *config) { c.reconnect = on }
}

// WithBackoff sets the reconnect schedule (see Backoff for the defaults).
func WithBackoff(b Backoff) Option {
	return func(c *config) { c.backoff = b }
}

// WithMaxAttempts gives up after n connect attempts in a row have failed
// (default 0: never give up while the server allows coming back).
func WithMaxAttempts(n int) Option {
	return func(c *config) { c.maxAttempts = n }
}

// WithMaxWait gives up instead of waiting when the server advises coming
// back only after more than d (e.g. a ban of a day). Default 0: any advised
// wait is honoured.
func WithMaxWait(d time.Duration) Option {
	return func(c *config) { c.maxWait = d }
}

// WithBuffer sets the capacity of the Notifications channel (default 64).
func WithBuffer(n int) Option {
	return func(c *config) { c.buffer = n }
}

// WithCloseTimeout bounds how long the client waits for the server to end
// the session after Goodbye before it cuts the stream (default 5s).
func WithCloseTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.closeTimeout = d
		}
	}
}

// WithAckInterval sets the least time between two Ack frames the client
// sends on its own (default 10s). Acks are cumulative, the server keeps
// none, and what a resume carries is the client's own highest ack, so the
// frames only tell the server how far the client got: the latest also
// goes with each pong (every heartbeat interval) and with Goodbye. A
// shorter interval sends more of them (on a connection of its own, each
// one a write, a read and a wake-up on both sides).
func WithAckInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.ackInterval = d
		}
	}
}

// WithResume resumes an earlier session on the first connect, e.g. one
// saved with Client.Resume before a process restart. If the server refuses
// to resume it but allows connecting, Dial connects afresh.
func WithResume(r Resume) Option {
	return func(c *config) { c.resume = &r }
}

// OnNotification delivers notifications to fn instead of the
// Notifications channel. fn runs on the client's dispatcher goroutine, in
// order with the other callbacks, one notification at a time in seq
// order; while it runs no further notification is handed over and a
// disconnect is reported only once it returns (pings are still answered:
// the stream is read on another goroutine). It may call Ack and Close.
func OnNotification(fn func(Notification)) Option {
	return func(c *config) { c.onNotification = fn }
}

// OnDisconnect calls fn for every end of a session and every failed connect
// attempt, after the callbacks for what came before. It runs on the
// client's dispatcher goroutine while the client waits to reconnect; the
// client connects again only once fn has returned. It may call Close.
func OnDisconnect(fn func(Disconnect)) Option {
	return func(c *config) { c.onDisconnect = fn }
}

// OnConnect calls fn after every Welcome: the first connect and every
// reconnect. It runs on the client's dispatcher goroutine, before the
// session's notifications are handed over, while the session is already
// served: the client answers the server's pings meanwhile, so a slow fn
// does not get the session ended as idle. For the first connect it may
// run after Dial returned. It may call Close.
func OnConnect(fn func(Session)) Option {
	return func(c *config) { c.onConnect = fn }
}

// OnFrame calls fn with every frame the server sends, in order (for
// tracing and tools such as hubctl connect, which prints each one),
// notifications included that the client then drops as duplicates. It
// runs on the client's dispatcher goroutine, in order with the other
// callbacks: before the notification a frame carries is handed over, and
// before the OnDisconnect of the end the frame announced. The client has
// acted on the frame already (answered the ping, noted the Disconnect);
// frames wait for fn in the client's backlog, counted with the
// notifications (see Client.Notifications). fn must not keep or change
// the frame. It may call Close.
func OnFrame(fn func(*hubpb.ServerFrame)) Option {
	return func(c *config) { c.onFrame = fn }
}

// WithSleep replaces how the client waits between reconnect attempts
// (tests: record the delays, or return at once). fn must return early with
// ctx's error when ctx ends.
func WithSleep(fn func(ctx context.Context, d time.Duration) error) Option {
	return func(c *config) {
		if fn != nil {
			c.sleep = fn
		}
	}
}

// WithRand replaces the jitter source (values in [0, 1)).
func WithRand(fn func() float64) Option {
	return func(c *config) {
		if fn != nil {
			c.rand = fn
		}
	}
}
