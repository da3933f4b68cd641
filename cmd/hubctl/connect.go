package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/sessionledger/sessionledger/hub/client"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// exitFor maps how a session ended to connect's exit code.
func exitFor(d *client.Disconnect) int {
	switch d.Cause {
	case client.CauseClosed:
		return exitOK
	case client.CauseKicked:
		return exitKicked
	case client.CauseBanned, client.CauseRejected:
		return exitRejected
	case client.CauseSuperseded:
		return exitSuperseded
	default: // lost, server_shutdown, idle_timeout, slow_consumer
		return exitLost
	}
}

// lineWriter prints one JSON object per line; safe for the client's
// callbacks.
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	lastSeq uint64 // the highest notification seq printed
}

// frame prints a server frame in protobuf's JSON mapping (field names as
// in the .proto, 64-bit integers as strings), in the one naming style of
// what connect prints: enum values in lower snake case like the causes
// ("code":"kicked", "reconnect":"not_allowed"), and a payload as every tool
// shows one (hubapi): the JSON value itself when it is JSON, else base64
// under "payload_base64". A notification whose seq is not above the
// highest printed is a redelivery of one printed already (a resume asks
// for everything after the last ack, and with --no-ack that is
// everything): the client drops it, and so does the output.
func (l *lineWriter) frame(f *hubpb.ServerFrame) {
	if n := f.GetNotification(); n != nil {
		l.mu.Lock()
		dup := n.GetSeq() <= l.lastSeq
		if !dup {
			l.lastSeq = n.GetSeq()
		}
		l.mu.Unlock()
		if dup {
			return
		}
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(f)
	if err != nil {
		return
	}
	var m map[string]map[string]any
	if json.Unmarshal(b, &m) == nil {
		for _, body := range m {
			for k, prefix := range map[string]string{"code": "DISCONNECT_CODE_", "reconnect": "RECONNECT_"} {
				if v, ok := body[k].(string); ok {
					body[k] = strings.ToLower(strings.TrimPrefix(v, prefix))
				}
			}
		}
		if n := f.GetNotification(); n != nil && m["notification"] != nil {
			delete(m["notification"], "payload")
			if c, ok := hubapi.PayloadJSON(n.GetPayload()); ok {
				m["notification"]["payload"] = json.RawMessage(c)
			} else if len(n.GetPayload()) > 0 {
				m["notification"]["payload_base64"] = base64.StdEncoding.EncodeToString(n.GetPayload())
			}
		}
		if nb, err := json.Marshal(m); err == nil {
			b = nb
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, string(compactJSON(b)))
}

func (l *lineWriter) object(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintln(l.w, string(b))
}

// clientDisconnect is the line connect prints when the client itself
// observes an end (with or without a Disconnect frame) and decides what
// to do next.
type clientDisconnect struct {
	Cause          string `json:"cause"`
	Reason         string `json:"reason,omitempty"`
	RejectCode     string `json:"reject_code,omitempty"`
	Code           string `json:"code"` // the stream's final gRPC status code, in snake case ("aborted")
	Reconnect      string `json:"reconnect,omitempty"`
	ReconnectAfter string `json:"reconnect_after,omitempty"`
	BannedUntil    string `json:"banned_until,omitempty"`
	EventID        string `json:"event_id,omitempty"`
	Actor          string `json:"actor,omitempty"`
	SupersededBy   string `json:"superseded_by,omitempty"`
	Session        string `json:"session,omitempty"`
	FromFrame      bool   `json:"from_frame"`
	Attempt        int    `json:"attempt"`
	WillReconnect  bool   `json:"will_reconnect"`
	Delay          string `json:"delay,omitempty"`
}

func describe(d client.Disconnect) clientDisconnect {
	out := clientDisconnect{Cause: d.Cause.String(), Reason: d.Reason, RejectCode: d.RejectCode, Code: snakeCase(d.Code.String()),
		EventID: d.EventID, Actor: d.Actor, SupersededBy: d.SupersededBy, Session: d.Session, FromFrame: d.FromFrame,
		Attempt: d.Attempt, WillReconnect: d.WillReconnect}
	if d.Reconnect != 0 {
		out.Reconnect = d.Reconnect.String()
	}
	if d.ReconnectAfter > 0 {
		out.ReconnectAfter = d.ReconnectAfter.String()
	}
	if !d.BannedUntil.IsZero() {
		out.BannedUntil = d.BannedUntil.UTC().Format(time.RFC3339Nano)
	}
	if d.WillReconnect {
		out.Delay = d.Delay.String()
	}
	return out
}

func newConnect(g *globals) *cobra.Command {
	var (
		user, device, jwt string
		jwtFile           string
		reconnect, noAck  bool
		hold              time.Duration
	)
	c := &cobra.Command{
		Use:   "connect --user U --device D [--reconnect]",
		Short: "Hold a client session and print every server frame as a JSON line",
		Long: `connect opens a session like an application would (through the hub/client
package) and prints every frame the server sends — welcome, notification,
ping, disconnect — as one JSON object per line on stdout, plus a
{"client_disconnect": ...} line whenever the session ends or a connect
attempt fails, and the client decides whether to come back: cause,
reason, reject_code, the gRPC code, the advice, banned_until,
superseded_by, the attempt number, will_reconnect and delay.
Notifications are acknowledged unless --no-ack; a notification
redelivered after a resume that was printed already is not printed
again. Ctrl-C ends the session normally (Goodbye).

With --reconnect it comes back after a disconnect as the server advises
(never after "not allowed", not before "after"), resuming the session so
missed notifications are redelivered.

Exit codes: 0 normal end (Ctrl-C, --for elapsed); 3 kicked; 4 banned or
refused; 5 superseded by a newer login; 6 connection lost: the server went
away, aborted the connection or ended the session for idleness, and also a
graceful server shutdown (cause server_shutdown) when connect does not
come back (without --reconnect); 1 could not reach the server.`,
		Example: `  hubctl connect --user alice --device phone
  hubctl connect --user alice --device phone --reconnect --for 10m
  hubctl connect --jwt "$(hubctl token --user alice --device phone --secret-file jwt.key)"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jwt != "" && jwtFile != "" {
				return usageError{errors.New("connect: --jwt and --jwt-file exclude each other")}
			}
			if user == "" && jwt == "" && jwtFile == "" {
				return usageError{errors.New("connect: give --user (and --device), or --jwt or --jwt-file")}
			}
			if hold < 0 {
				return usageError{errors.New("connect: --for must be positive")}
			}
			// The client dials its own connection (as an application
			// would): with gRPC keepalive, and a new connection after one
			// went silent, which it cannot do for one it is given.
			tlsCfg, err := g.tlsConfig()
			if err != nil {
				return err
			}
			out := &lineWriter{w: cmd.OutOrStdout()}
			opts := []client.Option{
				client.WithUser(user, device),
				client.WithReconnect(reconnect),
				client.OnFrame(out.frame),
				client.OnNotification(func(client.Notification) {}), // printed as frames
				client.OnDisconnect(func(d client.Disconnect) {
					out.object(map[string]clientDisconnect{"client_disconnect": describe(d)})
				}),
			}
			if tlsCfg != nil {
				opts = append(opts, client.WithTLS(tlsCfg))
			}
			if jwtFile != "" {
				// The file is read for the first token and again ahead of
				// each expiry: whatever renews it (a cron job, an agent)
				// keeps the session alive.
				opts = append(opts, client.WithTokenRefresh(func(context.Context) (string, error) {
					b, err := os.ReadFile(jwtFile)
					return strings.TrimSpace(string(b)), err
				}))
			}
			if jwt != "" {
				opts = append(opts, client.WithToken(jwt))
			}
			if !noAck {
				opts = append(opts, client.WithAutoAck())
			}
			ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
			cl, err := client.Dial(ctx, g.addr, opts...)
			cancel()
			if err != nil {
				var d *client.Disconnect
				switch {
				case errors.As(err, &d) && d.Cause != client.CauseLost:
					return &exitError{code: exitFor(d), err: fmt.Errorf("connect: %v", d)}
				case d != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
					return &exitError{code: exitFailure, err: fmt.Errorf("connect to %s: %v", g.addr, err)}
				default: // the client could not make a connection of --addr
					return usageError{fmt.Errorf("--addr %q: %w", g.addr, err)}
				}
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
			defer signal.Stop(sig)
			var timeout <-chan time.Time
			if hold > 0 {
				t := time.NewTimer(hold)
				defer t.Stop()
				timeout = t.C
			}
			select {
			case <-cl.Done():
			case <-sig:
				_ = cl.Close()
			case <-timeout:
				_ = cl.Close()
			}
			<-cl.Done()
			var d *client.Disconnect
			if err := cl.Err(); errors.As(err, &d) {
				if code := exitFor(d); code != exitOK {
					return &exitError{code: code, err: fmt.Errorf("session ended: %v", d)}
				}
			} else if err != nil {
				return err
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&user, "user", "", "user to connect as (without a JWT secret on hubd, taken as sent)")
	f.StringVar(&device, "device", "", "device name")
	f.StringVar(&jwt, "jwt", "", "client JWT (when hubd checks tokens); see hubctl token")
	f.StringVar(&jwtFile, "jwt-file", "", "file holding the client JWT, read again ahead of each expiry to refresh the session in place")
	f.BoolVar(&reconnect, "reconnect", false, "come back after a disconnect as the server advises, resuming the session")
	f.BoolVar(&noAck, "no-ack", false, "do not acknowledge notifications (they are redelivered on resume)")
	f.DurationVar(&hold, "for", 0, "end the session normally after this long (default: until it ends or Ctrl-C)")
	return c
}

// snakeCase writes a gRPC code's name as the rest of the output names
// things: "PermissionDenied" → "permission_denied".
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
