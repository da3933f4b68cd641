package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/daemon"
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

	// gRPC connection settings (daemon.ConnOptions)
	readBuffer, writeBuffer      int
	privateWriteBuffer           bool
	streamWindow, connWindow     int
	dynamicWindow                bool
	maxConnAge, maxConnAgeGrace  time.Duration
	keepaliveTime, keepaliveWait time.Duration
	keepaliveMinTime             time.Duration

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

	natsURLs          string
	embedNATS         bool
	natsListen        string
	natsClusterListen string
	natsRoutes        string
	replicas          int
	advertise         string
	clusterHeartbeat  time.Duration
	lostAfter         time.Duration

	signedCheckpointEvery time.Duration
	signedCheckpointDir   string
	// deprecated lists the deprecated flag names given (run warns).
	deprecated []string

	// Client tokens, roles and mutual TLS (issue 18).
	jwtPublicKey      string
	jwtJWKS           string
	jwtIssuer         string
	jwtAudience       string
	jwtMaxTTL         time.Duration
	noReconnectWindow time.Duration
	clientCA          string
	clientCAClients   bool
	watchInterval     time.Duration

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
	fs.IntVar(&o.readBuffer, "grpc-read-buffer", daemon.DefaultReadBufferSize, "each client connection's read buffer, in bytes (0: none, gRPC reads the socket for each frame)")
	fs.IntVar(&o.writeBuffer, "grpc-write-buffer", daemon.DefaultWriteBufferSize, "most bytes gRPC buffers before writing to a connection's socket")
	fs.BoolVar(&o.privateWriteBuffer, "grpc-private-write-buffer", false, "give each connection a write buffer of its own for its lifetime instead of one from a shared pool while it writes")
	fs.IntVar(&o.streamWindow, "grpc-stream-window", daemon.DefaultStreamWindow, "HTTP/2 flow-control window granted per stream, in bytes (at least 65535)")
	fs.IntVar(&o.connWindow, "grpc-conn-window", daemon.DefaultConnWindow, "HTTP/2 flow-control window granted per connection, in bytes (at least 65535)")
	fs.BoolVar(&o.dynamicWindow, "grpc-dynamic-window", false, "let gRPC size the windows from its bandwidth-delay estimate instead (it pings a client after each burst of data from it)")
	fs.DurationVar(&o.maxConnAge, "max-connection-age", 0, "close connections this old (±10% jitter) with a GOAWAY, so clients reconnect and spread over nodes (0: never)")
	fs.DurationVar(&o.maxConnAgeGrace, "max-connection-age-grace", 0, "after --max-connection-age, how long its streams may go on before the connection is closed (0: no limit)")
	fs.DurationVar(&o.keepaliveTime, "keepalive-time", 2*time.Hour, "ping a client connection silent this long (HTTP/2 ping; the hub's heartbeats end silent sessions sooner)")
	fs.DurationVar(&o.keepaliveWait, "keepalive-timeout", 20*time.Second, "close a connection that does not answer a keepalive ping within this")
	fs.DurationVar(&o.keepaliveMinTime, "keepalive-min-time", 5*time.Second, "how often a client may send keepalive pings; one that pings more often is disconnected")

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

	fs.StringVar(&o.natsURLs, "nats", "", "cluster mode: join through an existing NATS deployment with JetStream, URL[,URL...] (docs/cluster.md)")
	fs.BoolVar(&o.embedNATS, "embed-nats", false, "cluster mode: run an embedded NATS server; the embedded servers of the nodes form the JetStream cluster")
	fs.StringVar(&o.natsListen, "nats-listen", "127.0.0.1:4222", "with --embed-nats: the NATS client address")
	fs.StringVar(&o.natsClusterListen, "nats-cluster-listen", "", "with --embed-nats: the address the other nodes' NATS servers route to (HOST:PORT)")
	fs.StringVar(&o.natsRoutes, "nats-routes", "", "with --embed-nats: the cluster addresses of the NATS servers, nats://HOST:PORT,... (this node's may be listed too)")
	fs.IntVar(&o.replicas, "replicas", 3, "cluster mode: replicas of the cluster's stream (JetStream keeps each record on this many servers)")
	fs.DurationVar(&o.clusterHeartbeat, "cluster-heartbeat", time.Second, "cluster mode: how often each node tells the others it is alive")
	fs.DurationVar(&o.lostAfter, "lost-after", 0, "cluster mode: a node silent this long is dead, and the others record its sessions as lost (default 3 heartbeats)")
	fs.StringVar(&o.advertise, "advertise", "", "cluster mode: this node's gRPC address as other nodes' operators reach it (default: --listen)")
	fs.Uint64Var(&o.checkpointEvery, "projection-checkpoint-every", 10_000, "projection checkpoint (the projections' saved state, not a signed checkpoint) every this many events")
	fs.Uint64Var(&o.checkpointEvery, "checkpoint-every", 10_000, "deprecated: use --projection-checkpoint-every")
	fs.DurationVar(&o.signedCheckpointEvery, "signed-checkpoint-every", 10*time.Second, "sign a checkpoint of the ledger's Merkle tree when the log grew, at most this often")
	fs.StringVar(&o.signedCheckpointDir, "signed-checkpoint-dir", "", "also write every signed checkpoint to this directory, one file each, never rewritten (put it on another disk or machine)")
	fs.Uint64Var(&o.snapshotEvery, "snapshot-every", 100_000, "projection snapshot for time travel every this many events")
	fs.DurationVar(&o.stallTimeout, "stall-timeout", 10*time.Second, "health turns NOT_SERVING while a recorded event has waited this long for the projections to apply it (nothing since is enforced)")

	fs.StringVar(&o.jwtPublicKey, "jwt-public-key-file", "", "PEM public key (RSA, ECDSA P-256 or Ed25519) RS256/ES256/EdDSA client tokens are checked with; re-read on SIGHUP or change")
	fs.StringVar(&o.jwtJWKS, "jwt-jwks-file", "", "JWK Set file (keys by kid) RS256/ES256/EdDSA client tokens are checked with; re-read on SIGHUP or change, so keys rotate without a restart")
	fs.StringVar(&o.jwtIssuer, "jwt-issuer", "", "if set, client tokens must have this iss")
	fs.StringVar(&o.jwtAudience, "jwt-audience", "", "if set, client tokens must name this audience in aud")
	fs.DurationVar(&o.jwtMaxTTL, "jwt-max-ttl", 24*time.Hour, "longest lifetime (iat to exp) of a client token hubd accepts; also how long a revocation by token id lasts when the token's expiry is not given")
	fs.DurationVar(&o.noReconnectWindow, "no-reconnect-window", 10*time.Minute, "after a kick with reconnect not allowed, refuse fresh connects of the kicked user+device (or token) for this long (0: not at all)")
	fs.StringVar(&o.clientCA, "client-ca", "", "PEM CA certificates: require a client certificate signed by them for admin and audit calls (needs --tls-cert)")
	fs.BoolVar(&o.clientCAClients, "client-ca-clients", false, "with --client-ca: require a client certificate of client streams too")
	fs.DurationVar(&o.watchInterval, "watch-interval", 2*time.Second, "how often to look for a changed admin.token, --jwt-public-key-file or --jwt-jwks-file (0: only on SIGHUP)")

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

func envGiven(lookup func(string) (string, bool), flagName string) bool {
	_, ok := lookup(envName(flagName))
	return ok
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
	if fs.Changed("checkpoint-every") || (!fs.Changed("projection-checkpoint-every") && envGiven(lookup, "checkpoint-every")) {
		o.deprecated = append(o.deprecated, "checkpoint-every")
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
		{"stall-timeout", o.stallTimeout}, {"keepalive-time", o.keepaliveTime}, {"keepalive-timeout", o.keepaliveWait},
		{"keepalive-min-time", o.keepaliveMinTime},
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
	if o.readBuffer < 0 {
		errs = append(errs, fmt.Errorf("--grpc-read-buffer %d: want 0 (none) or more", o.readBuffer))
	}
	if o.writeBuffer <= 0 {
		errs = append(errs, fmt.Errorf("--grpc-write-buffer %d: want a positive number of bytes", o.writeBuffer))
	}
	for _, w := range []struct {
		name string
		v    int
	}{{"grpc-stream-window", o.streamWindow}, {"grpc-conn-window", o.connWindow}} {
		if w.v < 65535 || w.v > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("--%s %d: want 65535 to %d", w.name, w.v, math.MaxInt32))
		}
	}
	if o.maxConnAge < 0 || o.maxConnAgeGrace < 0 {
		errs = append(errs, fmt.Errorf("--max-connection-age %s, --max-connection-age-grace %s: want 0 (none) or a positive duration", o.maxConnAge, o.maxConnAgeGrace))
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
	if o.watchInterval < 0 {
		errs = append(errs, fmt.Errorf("--watch-interval %s: want 0 (SIGHUP only) or more", o.watchInterval))
	}
	if o.jwtMaxTTL <= 0 {
		errs = append(errs, fmt.Errorf("--jwt-max-ttl %s: want a positive duration", o.jwtMaxTTL))
	}
	if o.noReconnectWindow < 0 || o.noReconnectWindow > hubapi.MaxReconnectAfter {
		errs = append(errs, fmt.Errorf("--no-reconnect-window %s: want 0 to %s", o.noReconnectWindow, hubapi.MaxReconnectAfter))
	}
	if o.clientCA != "" && o.tlsCert == "" {
		errs = append(errs, errors.New("--client-ca needs TLS: give --tls-cert and --tls-key"))
	}
	if o.clientCAClients && o.clientCA == "" {
		errs = append(errs, errors.New("--client-ca-clients needs --client-ca"))
	}
	switch {
	case o.natsURLs != "" && o.embedNATS:
		errs = append(errs, errors.New("--nats and --embed-nats: give one (an existing NATS deployment, or embedded servers)"))
	case o.embedNATS:
		if _, _, err := net.SplitHostPort(o.natsListen); err != nil {
			errs = append(errs, fmt.Errorf("--nats-listen %q: %v", o.natsListen, err))
		}
		if o.natsClusterListen != "" {
			if _, _, err := net.SplitHostPort(o.natsClusterListen); err != nil {
				errs = append(errs, fmt.Errorf("--nats-cluster-listen %q: %v", o.natsClusterListen, err))
			}
		}
		if o.natsRoutes != "" && o.natsClusterListen == "" {
			errs = append(errs, errors.New("--nats-routes needs --nats-cluster-listen"))
		}
		if o.replicas > 1 && o.natsClusterListen == "" {
			errs = append(errs, fmt.Errorf("--replicas %d needs a NATS cluster: give --nats-cluster-listen and --nats-routes, or --replicas 1", o.replicas))
		}
	case o.natsClusterListen != "" || o.natsRoutes != "":
		errs = append(errs, errors.New("--nats-cluster-listen and --nats-routes go with --embed-nats"))
	}
	if o.clusterHeartbeat <= 0 {
		errs = append(errs, fmt.Errorf("--cluster-heartbeat %s: want a positive duration", o.clusterHeartbeat))
	} else if o.lostAfter != 0 && o.lostAfter < 2*o.clusterHeartbeat {
		errs = append(errs, fmt.Errorf("--lost-after %s: want 0 (3 heartbeats) or at least two heartbeats (%s)", o.lostAfter, 2*o.clusterHeartbeat))
	}
	if o.replicas < 1 || o.replicas > 5 {
		errs = append(errs, fmt.Errorf("--replicas %d: want 1 to 5", o.replicas))
	}
	if o.checkpointEvery == 0 || o.snapshotEvery == 0 {
		errs = append(errs, errors.New("--projection-checkpoint-every and --snapshot-every must be positive"))
	}
	if o.signedCheckpointEvery <= 0 {
		errs = append(errs, fmt.Errorf("--signed-checkpoint-every %s: want a positive duration", o.signedCheckpointEvery))
	}
	return errors.Join(errs...)
}
