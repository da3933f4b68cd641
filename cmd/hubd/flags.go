package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

// options are hubd's settings. Every flag has an environment equivalent:
// HUBD_ plus the flag name upper-cased with dashes as underscores
// (--max-per-user → HUBD_MAX_PER_USER). A flag given on the command line
// wins over the environment.
type options struct {
	data        string
	listen      string
	metrics     string
	node        string
	logFormat   string
	logLevel    string
	jwtSecret   string
	tlsCert     string
	tlsKey      string
	maxMsgBytes int
	pprof       bool

	heartbeat       time.Duration
	idleTimeout     time.Duration
	helloTimeout    time.Duration
	maxPerUser      int
	onePerDevice    bool
	maxSessions     int
	connectsPerMin  int
	rejectWindow    time.Duration
	notifyBuffer    int
	gracefulTimeout time.Duration
	resumeWindow    time.Duration
	redeliveryLimit int

	shutdownTimeout   time.Duration
	shutdownReconnect time.Duration
	shutdownJitter    time.Duration

	checkpointEvery uint64
	snapshotEvery   uint64

	// WebSocket transport (docs/operations.md, WebSocket).
	wsListen           string
	wsAllowedOrigins   string
	wsHandshakeTimeout time.Duration
	wsDemo             bool
}

const usageHead = `hubd serves the sessionledger hub: client sessions over gRPC (Hub.Connect),
the Admin and Audit APIs, health and reflection, every action recorded in
the ledger at DATA/ledger.db before it takes effect.

Usage: hubd [flags]

Example:
  hubd --data ./data --listen 127.0.0.1:7070 --metrics 127.0.0.1:7071
  HUBD_JWT_SECRET_FILE=/etc/hubd/jwt.key hubd --listen 0.0.0.0:7070

Every flag can also be set in the environment as HUBD_<FLAG> (upper case,
dashes as underscores); the command line wins.

Flags:
`

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hubd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.data, "data", "./data", "data directory: ledger.db, admin.token, resume.key")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:7070", "gRPC listen address (host:port)")
	fs.StringVar(&o.metrics, "metrics", "127.0.0.1:7071", "HTTP address for /metrics and /healthz (\"off\" disables)")
	fs.StringVar(&o.node, "node", "node-1", "this node's name in the events it records; keep it stable across restarts (crash recovery ends this node's sessions)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.jwtSecret, "jwt-secret-file", "", "file holding the HS256 secret client tokens are checked with (at least 32 bytes); without it identities are taken from Hello, allowed on loopback only")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "TLS certificate file (PEM); with --tls-key enables TLS")
	fs.StringVar(&o.tlsKey, "tls-key", "", "TLS private key file (PEM)")
	fs.BoolVar(&o.pprof, "pprof", false, "serve Go profiles (net/http/pprof) under /debug/pprof/ on the --metrics address")
	fs.IntVar(&o.maxMsgBytes, "max-message-size", hubapi.DefaultMaxMessageSize, "largest message a client or operator may send, in bytes (the default takes a 64 KiB notification payload)")

	fs.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "interval between server pings")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 0, "end a session silent this long (default 3 heartbeats)")
	fs.DurationVar(&o.helloTimeout, "hello-timeout", 10*time.Second, "how long a new stream may take to send Hello")
	fs.IntVar(&o.maxPerUser, "max-per-user", 0, "most live sessions per user; a new login supersedes the oldest (0: no limit)")
	fs.BoolVar(&o.onePerDevice, "one-per-device", true, "one live session per (user, device); a new login on the device supersedes the old one")
	fs.IntVar(&o.maxSessions, "max-sessions", 100_000, "most live sessions on this node")
	fs.IntVar(&o.connectsPerMin, "user-connects-per-minute", 120, "connects one user may make per minute")
	fs.DurationVar(&o.rejectWindow, "reject-window", 10*time.Second, "repeated connect rejections within this window are recorded as one event with a count")
	fs.IntVar(&o.notifyBuffer, "notify-buffer", 1024, "notifications that may wait for one session before it is ended as a slow consumer")
	fs.DurationVar(&o.gracefulTimeout, "graceful-timeout", 5*time.Second, "how long a graceful end waits for the client before closing its connection")
	fs.DurationVar(&o.resumeWindow, "resume-window", 2*time.Minute, "how long after a session ended it may be resumed")
	fs.IntVar(&o.redeliveryLimit, "redelivery-limit", 1000, "most missed notifications redelivered on a resume")

	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take before connections are closed")
	fs.DurationVar(&o.shutdownReconnect, "shutdown-reconnect", time.Second, "on shutdown, clients are told to reconnect after this delay ...")
	fs.DurationVar(&o.shutdownJitter, "shutdown-jitter", 5*time.Second, "... plus a random delay up to this, so they do not return at once")

	fs.Uint64Var(&o.checkpointEvery, "checkpoint-every", 10_000, "projection checkpoint every this many events")
	fs.Uint64Var(&o.snapshotEvery, "snapshot-every", 100_000, "projection snapshot for time travel every this many events")

	fs.StringVar(&o.wsListen, "ws-listen", "", "WebSocket address (host:port) serving /connect for browsers and the demo page /demo/ (default: no WebSocket)")
	fs.StringVar(&o.wsAllowedOrigins, "ws-allowed-origins", "", "comma-separated origins (scheme://host[:port], or *) whose pages may connect over WebSocket, besides pages served by hubd's own WebSocket address")
	fs.DurationVar(&o.wsHandshakeTimeout, "ws-handshake-timeout", 10*time.Second, "time a WebSocket client has to send its upgrade request and read the response")
	fs.BoolVar(&o.wsDemo, "ws-demo", true, "with --ws-listen, serve the demo page under /demo/")
	return fs
}

// origins is --ws-allowed-origins as a list.
func (o *options) origins() []string {
	var out []string
	for _, s := range strings.Split(o.wsAllowedOrigins, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// envName is the environment variable for a flag.
func envName(flagName string) string {
	return "HUBD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseOptions reads flags from args and, for flags not given there, from
// env (a lookup like os.LookupEnv).
func parseOptions(args []string, lookup func(string) (string, bool), out io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o, out)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (hubd takes only flags; see --help)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: invalid value for --%s: %v", envName(f.Name), v, f.Name, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var errs []error
	if o.data == "" {
		errs = append(errs, errors.New("--data must name a directory"))
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %v", o.listen, err))
	}
	if o.metrics != "off" && o.metrics != "" {
		if _, _, err := net.SplitHostPort(o.metrics); err != nil {
			errs = append(errs, fmt.Errorf("--metrics %q: %v", o.metrics, err))
		}
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		errs = append(errs, fmt.Errorf("--log-format %q: want text or json", o.logFormat))
	}
	switch o.logLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", o.logLevel))
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if o.maxMsgBytes < 1024 {
		errs = append(errs, fmt.Errorf("--max-message-size %d: want at least 1024", o.maxMsgBytes))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"heartbeat", o.heartbeat}, {"hello-timeout", o.helloTimeout}, {"reject-window", o.rejectWindow},
		{"graceful-timeout", o.gracefulTimeout}, {"resume-window", o.resumeWindow},
		{"shutdown-timeout", o.shutdownTimeout}, {"shutdown-reconnect", o.shutdownReconnect}, {"shutdown-jitter", o.shutdownJitter},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %s: want a positive duration", d.name, d.v))
		}
	}
	if o.idleTimeout < 0 || (o.idleTimeout > 0 && o.idleTimeout < o.heartbeat) {
		errs = append(errs, fmt.Errorf("--idle-timeout %s: want 0 (3 heartbeats) or at least the --heartbeat interval %s", o.idleTimeout, o.heartbeat))
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"max-sessions", o.maxSessions}, {"user-connects-per-minute", o.connectsPerMin},
		{"notify-buffer", o.notifyBuffer}, {"redelivery-limit", o.redeliveryLimit},
	} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %d: want a positive number", n.name, n.v))
		}
	}
	if o.maxPerUser < 0 {
		errs = append(errs, fmt.Errorf("--max-per-user %d: want 0 (no limit) or more", o.maxPerUser))
	}
	if o.wsListen != "" {
		if _, _, err := net.SplitHostPort(o.wsListen); err != nil {
			errs = append(errs, fmt.Errorf("--ws-listen %q: %v", o.wsListen, err))
		}
	}
	for _, origin := range o.origins() {
		if origin == "*" {
			continue
		}
		if u, err := url.Parse(origin); err != nil || u.Scheme == "" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("--ws-allowed-origins: %q: want scheme://host[:port] or *", origin))
		}
	}
	if o.wsHandshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--ws-handshake-timeout %s: want a positive duration", o.wsHandshakeTimeout))
	}
	if o.checkpointEvery == 0 || o.snapshotEvery == 0 {
		errs = append(errs, errors.New("--checkpoint-every and --snapshot-every must be positive"))
	}
	return errors.Join(errs...)
}
