package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

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
	maxStreams  int
	pprof       bool
	console     string

	help, version bool

	heartbeat       time.Duration
	idleTimeout     time.Duration
	helloTimeout    time.Duration
	maxPerUser      int
	connectBurst    int
	onePerDevice    bool
	maxSessions     int
	connectsPerMin  int
	rejectWindow    time.Duration
	notifyBuffer    int
	gracefulTimeout time.Duration
	frameRate       int
	resumeWindow    time.Duration
	redeliveryLimit int

	shutdownTimeout   time.Duration
	shutdownReconnect time.Duration
	shutdownJitter    time.Duration

	checkpointEvery uint64
	snapshotEvery   uint64
	stallTimeout    time.Duration
}

const usageHead = `hubd serves the sessionledger hub: client sessions over gRPC (Hub.Connect),
the Admin and Audit APIs, health and reflection, every action recorded in
the ledger at DATA/ledger.db before it takes effect.

Usage: hubd [flags]

Example:
  hubd --data ./data --listen 127.0.0.1:7070 --metrics 127.0.0.1:7071
  hubd --console-listen 127.0.0.1:7072        # the web console (docs/console.md)
  HUBD_JWT_SECRET_FILE=/etc/hubd/jwt.key hubd --listen 0.0.0.0:7070

Every flag can also be set in the environment as HUBD_<FLAG> (upper case,
dashes as underscores); the command line wins.

Stop it with SIGINT or SIGTERM (Ctrl-C): sessions are told to reconnect
later and every end is recorded. Under "go run" a SIGTERM reaches go, not
hubd: build it (go build ./cmd/hubd) for anything scripted.

Flags:
`

func newFlagSet(o *options) *pflag.FlagSet {
	fs := pflag.NewFlagSet("hubd", pflag.ContinueOnError)
	// Errors are reported once, by run, in one line; --help prints usage.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.BoolVarP(&o.help, "help", "h", false, "print this help and exit")
	fs.BoolVar(&o.version, "version", false, "print the version (from the build information) and exit")
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
	fs.StringVar(&o.console, "console-listen", "", "HTTP address of the web console (docs/console.md; off by default); beyond loopback it needs --tls-cert and --tls-key")
	fs.IntVar(&o.maxMsgBytes, "max-message-size", hubapi.DefaultMaxMessageSize, "largest message a client or operator may send, in bytes (the default takes a 64 KiB notification payload)")
	fs.IntVar(&o.maxStreams, "max-streams-per-conn", defaultMaxStreamsPerConn, "most concurrent gRPC streams (sessions and calls) on one client connection; more wait for one to end")

	fs.DurationVar(&o.heartbeat, "heartbeat", 10*time.Second, "interval between server pings")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 0, "end a session silent this long (default 3 heartbeats)")
	fs.DurationVar(&o.helloTimeout, "hello-timeout", 10*time.Second, "how long a new stream may take to send Hello")
	fs.IntVar(&o.maxPerUser, "max-per-user", 0, "most live sessions per user; a new login supersedes the oldest (0: no limit)")
	fs.BoolVar(&o.onePerDevice, "one-per-device", true, "one live session per (user, device); a new login on the device supersedes the old one")
	fs.IntVar(&o.maxSessions, "max-sessions", 100_000, "most live sessions on this node")
	fs.IntVar(&o.connectsPerMin, "user-connects-per-minute", 120, "connects one user may make per minute, sustained (a token bucket per user)")
	fs.IntVar(&o.connectBurst, "user-connect-burst", 0, "connects one user may make at once (default the smaller of 10 and --user-connects-per-minute); a minute passes at most both added")
	fs.DurationVar(&o.rejectWindow, "reject-window", 10*time.Second, "repeated connect rejections within this window are recorded as one event with a count")
	fs.IntVar(&o.notifyBuffer, "notify-buffer", 1024, "notifications that may wait for one session before it is ended as a slow consumer")
	fs.DurationVar(&o.gracefulTimeout, "graceful-timeout", 5*time.Second, "how long a graceful end waits for the client before closing its connection")
	fs.IntVar(&o.frameRate, "client-frame-rate", 100, "frames a second one session's client may send (bursts of two seconds' worth); beyond it they are read no faster")
	fs.DurationVar(&o.resumeWindow, "resume-window", 2*time.Minute, "how long after a session ended it may be resumed")
	fs.IntVar(&o.redeliveryLimit, "redelivery-limit", 1000, "most missed notifications redelivered on a resume")

	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long a graceful shutdown may take before connections are closed")
	fs.DurationVar(&o.shutdownReconnect, "shutdown-reconnect", time.Second, "on shutdown, clients are told to reconnect after this delay ...")
	fs.DurationVar(&o.shutdownJitter, "shutdown-jitter", 5*time.Second, "... plus a random delay up to this, so they do not return at once")

	fs.Uint64Var(&o.checkpointEvery, "checkpoint-every", 10_000, "projection checkpoint every this many events")
	fs.Uint64Var(&o.snapshotEvery, "snapshot-every", 100_000, "projection snapshot for time travel every this many events")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", 10*time.Second, "health turns NOT_SERVING while a recorded event has waited this long for the projections to apply it (nothing since is enforced)")
	return fs
}

// defaultMaxStreamsPerConn is the default of --max-streams-per-conn: the
// most concurrent streams one client connection may hold. gRPC's own
// default is unlimited, and a stream costs the hub goroutines until its
// Hello (or the Hello timeout): 2,000 streams without a Hello on one
// connection held 6,000 of them. An application that puts more sessions
// on one connection (hub/client's WithConn) raises it.
const defaultMaxStreamsPerConn = 256

// envName is the environment variable for a flag.
func envName(flagName string) string {
	return "HUBD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// errHelp is parseOptions' answer to --help or --version: what to print
// is in its message, and hubd exits 0.
type errHelp struct{ text string }

func (e errHelp) Error() string { return e.text }

// usage is hubd --help.
func usage(fs *pflag.FlagSet) string {
	return usageHead + fs.FlagUsages()
}

// parseOptions reads flags from args and, for flags not given there, from
// env (a lookup like os.LookupEnv). A bad flag is one line of error (see
// --help), not the whole usage.
func parseOptions(args []string, lookup func(string) (string, bool), out io.Writer) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	for _, a := range args {
		if a == "--" {
			break
		}
		// The standard library's flag package took -data as --data; pflag
		// reads it as -d -a -t -a. Say so instead of a puzzling error.
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if fs.Lookup(name) != nil {
				return nil, fmt.Errorf("%s: flags take two dashes: --%s (see hubd --help)", a, name)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%v (see hubd --help)", err)
	}
	if o.help {
		return nil, errHelp{usage(fs)}
	}
	if o.version {
		return nil, errHelp{versionLine()}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("stray argument %q: hubd takes only flags (see hubd --help)", fs.Arg(0))
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "help" || f.Name == "version" {
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
		{"stall-timeout", o.stallTimeout},
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
		{"max-streams-per-conn", o.maxStreams}, {"client-frame-rate", o.frameRate},
	} {
		if n.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s %d: want a positive number", n.name, n.v))
		}
	}
	if o.connectBurst < 0 {
		errs = append(errs, fmt.Errorf("--user-connect-burst %d: want 0 (the default) or more", o.connectBurst))
	}
	if o.console != "" {
		if _, _, err := net.SplitHostPort(o.console); err != nil {
			errs = append(errs, fmt.Errorf("--console-listen %q: %v", o.console, err))
		}
	}
	if o.maxPerUser < 0 {
		errs = append(errs, fmt.Errorf("--max-per-user %d: want 0 (no limit) or more", o.maxPerUser))
	}
	if o.checkpointEvery == 0 || o.snapshotEvery == 0 {
		errs = append(errs, errors.New("--checkpoint-every and --snapshot-every must be positive"))
	}
	return errors.Join(errs...)
}
