// Package daemon is hubd: it wires the ledger, its projections and the hub
// (ledger → projections → hub, each consuming the narrow interfaces the
// next declares), serves them over gRPC with the Audit service and
// /metrics, and owns the order of start-up and shutdown.
//
// # Lifecycle
//
// New checks the configuration and reads the files a mistake in which is
// the operator's (JWT secret, TLS certificate) before anything is touched:
// its errors are usage errors. Start creates the data directory, opens the
// ledger, starts the projections (replaying from their checkpoint), starts
// the hub (which records crashed sessions as lost), and serves. Shutdown
// tells every session to reconnect later, records every end, stops the
// servers, the projections and the ledger, in that order, and returns by
// its ctx's deadline.
package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/sessionledger/sessionledger/audit"
	jsclient "github.com/sessionledger/sessionledger/clients/js"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/console"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/cluster"
	"github.com/sessionledger/sessionledger/ledger/signkey"
	"github.com/sessionledger/sessionledger/projections"
)

// The ledger and its projection runner are what the hub consumes.
var (
	_ hub.Publisher  = (*ledger.Publisher)(nil)
	_ hub.Projection = (*projections.Runner)(nil)
	_ hub.History    = (*ledger.Store)(nil)
)

// Config configures a Daemon. Zero values take the defaults.
type Config struct {
	// Data is the data directory: ledger.db, admin.token, resume.key
	// (default "./data").
	Data string
	// Listen is the gRPC address (default 127.0.0.1:7070; port 0 picks
	// one, see Addr).
	Listen string
	// Metrics is the HTTP address of /metrics and /healthz; "" or "off"
	// serves none.
	Metrics string
	// Pprof serves net/http/pprof under /debug/pprof/ on Metrics.
	Pprof bool
	// ConsoleListen is the HTTP address of the web console
	// (internal/console); "" serves none. Beyond loopback it needs TLS
	// (TLSCertFile/TLSKeyFile, which it then serves with too).
	ConsoleListen string
	// JWTSecretFile holds the HS256 secret client tokens are checked with.
	// Without it (and without JWTPublicKeyFile and JWKSFile) identities
	// are taken from Hello as sent, which is allowed on a loopback
	// listener only.
	JWTSecretFile string
	// JWTPublicKeyFile (PEM) and JWKSFile (a JWK Set, keys by kid) hold
	// the public keys RS256, ES256 and EdDSA client tokens are checked
	// with. Both, and the admin token file, are re-read on Reload (SIGHUP)
	// and when they change (checked every WatchInterval, default 2s;
	// negative: on Reload only).
	JWTPublicKeyFile, JWKSFile string
	WatchInterval              time.Duration
	// ClientCAFile makes the listener ask for client certificates signed
	// by these CAs (PEM): admin and audit calls must present one, and
	// client streams too with ClientCertsForClients. It needs TLS.
	ClientCAFile          string
	ClientCertsForClients bool
	// TLSCertFile and TLSKeyFile enable TLS on Listen. Creds, if set,
	// secures it instead (tests pass credentials made in memory).
	TLSCertFile, TLSKeyFile string
	Creds                   credentials.TransportCredentials
	// GRPCOptions are added to the gRPC server's own (tests add
	// interceptors).
	GRPCOptions []grpc.ServerOption
	// MaxMessageSize is the largest message a client or operator may send
	// (default hubapi.DefaultMaxMessageSize).
	MaxMessageSize int
	// WSListen is the address of the WebSocket transport: /connect, and
	// the demo page under /demo/ unless WSNoDemo; "" (the default) serves
	// no WebSocket. With TLSCertFile it serves wss.
	WSListen string
	// WSNoDemo leaves the demo page out.
	WSNoDemo bool
	// WebSocket configures the WebSocket transport. The daemon sets its
	// ReadLimit to MaxMessageSize unless set.
	WebSocket hub.WebSocketConfig
	// MaxStreams is the most concurrent gRPC streams (sessions and calls)
	// on one client connection (default 256; gRPC's own default is
	// unlimited, and a stream costs goroutines until its Hello).
	MaxStreams int
	// Conn are the gRPC server's settings for each client connection.
	Conn ConnOptions
	// Hub configures the hub. The daemon fills Metrics and Logger, and
	// ResumeKey, JWTSecret and AdminTokens unless they are set (from the
	// data directory and JWTSecretFile).
	Hub hub.Config
	// Projections configures the projection runner. The daemon fills
	// OnChange and Logger.
	Projections projections.Config
	// Cluster, if set, makes this hubd a node of a cluster
	// (docs/cluster.md): its ledger is a replica of the cluster's stream
	// and the hub records through it. The daemon fills Node, InstanceID,
	// ResumeKey and Logger, and the embedded server's StoreDir.
	Cluster *cluster.Config
	// Advertise is the gRPC address other nodes' operators reach this one
	// at, shown by `hubctl cluster` (default: the address listened on).
	Advertise string
	// Signing configures the signed checkpoints of the ledger's Merkle tree
	// (docs/verification.md).
	Signing Signing
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// ConnOptions are the gRPC server's settings for each client connection:
// what one costs in memory, how long it may live, how often its peer may
// ping. With one connection per device they are per session. Zero values
// take the defaults below.
type ConnOptions struct {
	// ReadBufferSize is each connection's read buffer in bytes (default
	// DefaultReadBufferSize); negative: none, gRPC reads the socket
	// directly for each frame.
	ReadBufferSize int
	// WriteBufferSize is the most gRPC buffers before a write to the
	// socket, in bytes (default DefaultWriteBufferSize).
	WriteBufferSize int
	// PrivateWriteBuffer keeps a write buffer per connection for its
	// lifetime; by default (false) connections take one from a shared pool
	// while they write and return it after.
	PrivateWriteBuffer bool
	// StreamWindow and ConnWindow are the HTTP/2 flow-control windows the
	// server grants its clients, per stream and per connection, in bytes
	// (defaults DefaultStreamWindow and DefaultConnWindow; at least 64 KiB
	// less one byte). A window costs nothing until the client fills it.
	StreamWindow, ConnWindow int32
	// DynamicWindow lets gRPC grow the windows from its bandwidth-delay
	// estimate instead, which pings the client after each burst of data it
	// sends: with clients that ack every notification, a ping per ack.
	DynamicWindow bool
	// MaxConnectionAge closes a connection this old (plus up to 10%
	// jitter) after MaxConnectionAgeGrace, with a GOAWAY so its clients
	// reconnect elsewhere (0: never).
	MaxConnectionAge, MaxConnectionAgeGrace time.Duration
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it, and KeepaliveTimeout how long it then waits for the
	// answer before closing it (defaults 2h and 20s, gRPC's; the hub's own
	// heartbeats find dead sessions sooner).
	KeepaliveTime, KeepaliveTimeout time.Duration
	// KeepaliveMinTime is how often a client may ping; one that pings
	// more often is disconnected (default 5s).
	KeepaliveMinTime time.Duration
}

// rpcDrainGrace bounds gRPC's graceful stop once the hub's sessions have
// ended: the unary calls still running get this long to finish.
const rpcDrainGrace = 2 * time.Second

// Defaults of ConnOptions' buffers; see docs/performance.md (Hub, one
// connection per session) for how they were chosen.
const (
	DefaultReadBufferSize  = 32 * 1024
	DefaultWriteBufferSize = 32 * 1024
	DefaultStreamWindow    = 65535
	DefaultConnWindow      = 1 << 20
)

func (c *ConnOptions) setDefaults() {
	if c.ReadBufferSize == 0 {
		c.ReadBufferSize = DefaultReadBufferSize
	}
	if c.WriteBufferSize <= 0 {
		c.WriteBufferSize = DefaultWriteBufferSize
	}
	if c.KeepaliveMinTime <= 0 {
		c.KeepaliveMinTime = 5 * time.Second
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.ConnWindow <= 0 {
		c.ConnWindow = DefaultConnWindow
	}
}

// serverOptions are the gRPC server options of c.
func (c ConnOptions) serverOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ReadBufferSize(max(c.ReadBufferSize, 0)),
		grpc.WriteBufferSize(c.WriteBufferSize),
		grpc.SharedWriteBuffer(!c.PrivateWriteBuffer),
		// Clients may ping to keep NATs open, but not flood.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: c.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: c.MaxConnectionAge, MaxConnectionAgeGrace: c.MaxConnectionAgeGrace,
			Time: c.KeepaliveTime, Timeout: c.KeepaliveTimeout}),
	}
	if !c.DynamicWindow {
		opts = append(opts, grpc.StaticStreamWindowSize(c.StreamWindow), grpc.StaticConnWindowSize(c.ConnWindow))
	}
	return opts
}

// Signing configures the checkpoint signer.
type Signing struct {
	// Every is the most often a checkpoint is signed, when the log grew
	// (default 10s).
	Every time.Duration
	// Dir, if set, gets a file per checkpoint, never rewritten.
	Dir string
}

func (c *Config) setDefaults() {
	if c.Data == "" {
		c.Data = "./data"
	}
	if c.Listen == "" {
		c.Listen = "127.0.0.1:7070"
	}
	if c.Metrics == "off" {
		c.Metrics = ""
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = hubapi.DefaultMaxMessageSize
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = 256
	}
	c.Conn.setDefaults()
	if c.Signing.Every <= 0 {
		c.Signing.Every = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Daemon is a running hubd.
type Daemon struct {
	cfg       Config
	log       *slog.Logger
	jwtSecret []byte
	tlsCreds  credentials.TransportCredentials
	// tlsConf is TLSCertFile's certificate with the client-CA rules,
	// loaded once (New): tlsCreds, the WebSocket listener and the console
	// serve it. Nil without TLSCertFile.
	tlsConf *tls.Config

	creds credFiles // the credential files and what was last read of them

	store  *ledger.Store
	runner *projections.Runner
	hub    *hub.Server
	node   *cluster.Node // nil on a single node
	tokens *tokenSync    // a cluster node's admin token file kept the cluster's (nil: none)
	ready  atomic.Bool   // the hub serves
	signer *checkpoint.Signer
	vkey   string // the signer's verifier key
	audit  *audit.Server
	grpc   *grpc.Server
	http   *http.Server
	ws     *hub.WebSocket
	wsHTTP *http.Server
	reg    *prometheus.Registry

	addr, metricsAddr, wsAddr string
	failed                    chan error // a server that stopped on its own

	// The web console (ConsoleListen), nil when off.
	console     *http.Server
	consoleAddr string

	stopOnce sync.Once
	stopErr  error
}

// New checks cfg and reads the files it names that are the operator's to
// get right (the JWT secret, the TLS certificate), touching nothing: an
// error here is a usage error.
func New(cfg Config) (*Daemon, error) {
	cfg.setDefaults()
	// failed has room for each server that can fail (metrics, gRPC,
	// WebSocket, console), so none blocks reporting.
	d := &Daemon{cfg: cfg, log: cfg.Logger, failed: make(chan error, 4), jwtSecret: cfg.Hub.JWTSecret, tlsCreds: cfg.Creds}
	if cfg.JWTSecretFile != "" {
		b, err := hubapi.ReadSecretFile(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		d.jwtSecret = bytes.TrimSpace(b)
		if len(d.jwtSecret) < 32 {
			return nil, fmt.Errorf("--jwt-secret-file %s: the secret is %d bytes; want at least 32", cfg.JWTSecretFile, len(d.jwtSecret))
		}
	}
	if err := d.readKeys(); err != nil {
		return nil, err
	}
	if d.jwtSecret == nil && d.creds.keys == nil && cfg.Hub.ClientKeys == nil && !IsLoopback(cfg.Listen) {
		return nil, fmt.Errorf("refusing to listen on %s without --jwt-secret-file, --jwt-public-key-file or --jwt-jwks-file: clients would be trusted as whatever user they claim; listen on 127.0.0.1 or configure client token keys", cfg.Listen)
	}
	if d.jwtSecret == nil && d.creds.keys == nil && cfg.Hub.ClientKeys == nil && cfg.WSListen != "" && !IsLoopback(cfg.WSListen) {
		return nil, fmt.Errorf("refusing to serve WebSocket on %s without --jwt-secret-file, --jwt-public-key-file or --jwt-jwks-file: clients would be trusted as whatever user they claim; listen on 127.0.0.1 or configure client token keys", cfg.WSListen)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.TLSCertFile != "" {
		conf, err := serverTLSConfig(cfg.TLSCertFile, cfg.TLSKeyFile, cfg.ClientCAFile, cfg.ClientCertsForClients)
		if err != nil {
			return nil, err
		}
		d.tlsConf, d.tlsCreds = conf, credentials.NewTLS(conf) // NewTLS works on a copy
	} else if cfg.ClientCAFile != "" && cfg.Creds == nil {
		return nil, errors.New("--client-ca needs TLS (--tls-cert and --tls-key)")
	}
	if cfg.ConsoleListen != "" && cfg.TLSCertFile == "" && !IsLoopback(cfg.ConsoleListen) {
		// A browser would send the admin token in clear text.
		return nil, fmt.Errorf("refusing to serve the console on %s without TLS: admin tokens would cross the network in clear text; serve it on 127.0.0.1 (behind a TLS proxy) or give --tls-cert and --tls-key", cfg.ConsoleListen)
	}
	return d, nil
}

// Start opens the data directory and the ledger, brings the projections
// up to the head, starts the hub and serves. ctx bounds the start (a long
// replay); on error everything Start opened is closed again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	cfg, log := d.cfg, d.log
	if d.jwtSecret == nil && d.creds.keys == nil && cfg.Hub.ClientKeys == nil {
		log.Warn("no client token keys: client identities are taken from Hello as sent (allowed on a loopback listener only)", "listen", cfg.Listen)
	}
	if d.tlsCreds == nil && !IsLoopback(cfg.Listen) {
		log.Warn("listening on a non-loopback address without TLS: admin tokens, client tokens and notifications cross the network in clear text; use --tls-cert and --tls-key", "listen", cfg.Listen)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	// /metrics and /healthz come up first: a node catching up with its
	// cluster's log reports NOT_SERVING and its lag meanwhile.
	d.reg = prometheus.NewRegistry()
	d.registerProcessMetrics()
	if cfg.Metrics != "" {
		ml, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			return fmt.Errorf("listen %s (metrics): %w", cfg.Metrics, err)
		}
		d.metricsAddr = ml.Addr().String()
		d.http = &http.Server{Handler: d.httpMux(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := d.http.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				d.failed <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	defer func() {
		if err != nil && d.http != nil {
			_ = d.http.Close()
		}
	}()

	// Registered with the ledger's other metrics once the store is open.
	commitSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sessionledger_ledger_commit_seconds",
		Help:    "Time for one ledger transaction (a group commit, or a cluster node's replica commit) from start to durable: its pages built (index merges and the Merkle tree included), written and fdatasynced (bbolt: twice, three times when the file grows).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	lopts := &ledger.Options{Logger: log.With("component", "ledger"),
		OnCommit: func(took time.Duration, _ int) { commitSeconds.Observe(took.Seconds()) }}
	// A cluster node first agrees with the cluster on what every node
	// shares (before the token and key files are read: a node that has
	// none takes the cluster's) and on the log id its replica carries.
	if cfg.Cluster != nil {
		if err := d.connectCluster(ctx); err != nil {
			return err
		}
		defer func() {
			if err != nil && d.store == nil {
				_ = d.node.Close(context.Background())
			}
		}()
		if err := d.syncAdminTokens(ctx); err != nil {
			return err
		}
		lopts.Replica, lopts.LogID = true, d.node.LogID()
	}
	dbPath := filepath.Join(cfg.Data, "ledger.db")
	store, err := ledger.Open(dbPath, lopts)
	if errors.Is(err, ledger.ErrLocked) {
		return fmt.Errorf("%s is locked: another hubd is using data directory %s", dbPath, cfg.Data)
	}
	if err != nil {
		return fmt.Errorf("open ledger %s: %w", dbPath, err)
	}
	d.store = store
	d.registerLedgerMetrics(commitSeconds)
	defer func() {
		if err != nil {
			d.closeLedger(context.Background())
		}
	}()
	if err := d.startSigner(); err != nil {
		return err
	}
	ports := hub.Ports{Publisher: ledger.NewPublisher(store), History: store}
	if d.node != nil {
		if err := d.node.Join(ctx, store); err != nil {
			return fmt.Errorf("join the cluster: %w", err)
		}
		ports.Publisher, ports.Cluster = d.node.Publisher(), clusterView{d.node}
	}
	hc := cfg.Hub
	if hc.AdminTokens == nil && hc.Admins == nil {
		tokens, created, err := hubapi.LoadOrCreateAdminTokens(cfg.Data)
		if err != nil {
			return err
		}
		if created {
			log.Info("created an admin token; hubctl and auditq read it from there", "file", filepath.Join(cfg.Data, hubapi.AdminTokenFile))
		}
		hc.Admins = tokens
		d.creds.adminFile = filepath.Join(cfg.Data, hubapi.AdminTokenFile)
	}
	if cfg.ClientCAFile != "" {
		hc.RequireAdminCert = true
		hc.RequireClientCert = hc.RequireClientCert || cfg.ClientCertsForClients
	}
	if hc.ResumeKey == nil {
		if hc.ResumeKey, err = hub.LoadOrCreateResumeKey(cfg.Data); err != nil {
			return err
		}
	}

	hc.JWTSecret, hc.Metrics = d.jwtSecret, d.reg
	if hc.ClientKeys == nil {
		hc.ClientKeys = d.creds.keys
	}
	if cfg.Cluster != nil && hc.LostCheck == 0 {
		hc.LostCheck = cfg.Cluster.Heartbeat
	}
	hc.Logger = log.With("component", "hub")
	pc := cfg.Projections
	pc.Logger = log.With("component", "projections")
	// The runner's change feed is the hub's Enforce; the hub is made
	// first (New does no I/O) and the runner calls it only once started.
	var h *hub.Server
	pc.OnChange = func(ch projections.Change) { h.Enforce(ch) }
	d.runner = projections.NewRunner(store, pc)
	ports.Projection = d.runner
	if h, err = hub.New(ports, hc); err != nil {
		return err
	}

	begin := time.Now()
	if err := d.runner.Start(ctx); err != nil {
		return fmt.Errorf("start projections: %w", err)
	}
	cpSeq, replayed := d.runner.StartInfo()
	log.Info("projections ready", "applied", d.runner.Applied(), "checkpoint", cpSeq, "replayed", replayed, "took", time.Since(begin).Round(time.Millisecond))
	if err := h.Start(ctx); err != nil {
		return err
	}

	gopts := append(h.ServerOptions(),
		grpc.MaxRecvMsgSize(cfg.MaxMessageSize),
		grpc.MaxConcurrentStreams(uint32(cfg.MaxStreams)),
	)
	gopts = append(gopts, cfg.Conn.serverOptions()...)
	if d.tlsCreds != nil {
		gopts = append(gopts, grpc.Creds(d.tlsCreds))
	}
	gopts = append(gopts, cfg.GRPCOptions...)
	d.grpc = grpc.NewServer(gopts...)
	h.Register(d.grpc)
	d.audit = audit.NewServer(store, audit.WithVerifierKey(d.vkey))
	audit.RegisterServer(d.grpc, d.audit) // admin-token protected by the hub's interceptors
	reflection.Register(d.grpc)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = h.Shutdown(ctx)
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	d.addr = ln.Addr().String()
	d.hub = h
	if cfg.WSListen != "" {
		if err := d.startWebSocket(); err != nil {
			ln.Close()
			_ = h.Shutdown(ctx)
			return err
		}
	}
	d.ready.Store(true)
	if d.node != nil {
		d.node.SetReport(func() (string, uint64, int) { return d.advertised(), d.runner.Applied(), h.Live() })
	}
	go func() {
		if err := h.ServeGRPC(d.grpc, hub.NewListener(ln)); err != nil {
			d.failed <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	if err := d.serveConsole(); err != nil {
		ln.Close()
		if d.http != nil {
			_ = d.http.Close()
		}
		_ = h.Shutdown(ctx)
		return err
	}
	if err := hubapi.WriteAddrFile(cfg.Data, d.addr, d.tlsCreds != nil); err != nil {
		log.Warn("could not write the address file (auditq --data finds this hubd by it)", "file", filepath.Join(cfg.Data, hubapi.AddrFile), "err", err)
	}
	d.startWatching()
	if d.tokens != nil {
		d.tokens.run(d.Reload)
	}
	metricsAddr, wsAddr := d.metricsAddr, d.wsAddr
	if metricsAddr == "" {
		metricsAddr = "off"
	}
	if wsAddr == "" {
		wsAddr = "off"
	}
	log.Info("hubd listening", "grpc", d.addr, "websocket", wsAddr, "metrics", metricsAddr, "console", d.consoleURL(), "data", cfg.Data, "node", h.Node(),
		"tls", d.tlsCreds != nil, "jwt", hc.ClientKeys != nil, "client_ca", cfg.ClientCAFile != "", "head", store.Head().Seq, "cluster", cfg.Cluster != nil)
	return nil
}

// startWebSocket serves the WebSocket transport at /connect on WSListen,
// and the demo page under /demo/.
func (d *Daemon) startWebSocket() error {
	cfg := d.cfg
	wc := cfg.WebSocket
	if wc.ReadLimit == 0 {
		wc.ReadLimit = cfg.MaxMessageSize
	}
	ws, err := d.hub.NewWebSocket(wc)
	if err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/connect", ws)
	if !cfg.WSNoDemo {
		mux.Handle("/demo/", http.StripPrefix("/demo/", jsclient.DemoHandler()))
		mux.Handle("/{$}", http.RedirectHandler("/demo/", http.StatusFound))
	}
	wl, err := net.Listen("tcp", cfg.WSListen)
	if err != nil {
		return fmt.Errorf("listen %s (websocket): %w", cfg.WSListen, err)
	}
	if d.tlsConf != nil {
		// The same certificate and client-CA rules as the gRPC listener.
		wl = tls.NewListener(wl, d.tlsConf)
	}
	d.ws, d.wsAddr = ws, wl.Addr().String()
	// The upgrade request gets the time the response gets.
	d.wsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: ws.HandshakeTimeout(), ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	go func() {
		if err := d.wsHTTP.Serve(wl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.failed <- fmt.Errorf("websocket server: %w", err)
		}
	}()
	return nil
}

// Failed delivers the error of a server that stopped on its own (its
// listener failed); the caller should then Shutdown.
func (d *Daemon) Failed() <-chan error { return d.failed }

// Addr is the gRPC address served; MetricsAddr the HTTP one ("" if none).
func (d *Daemon) Addr() string { return d.addr }

// WSAddr is the WebSocket address served ("" if none).
func (d *Daemon) WSAddr() string { return d.wsAddr }

// MetricsAddr is the address of /metrics and /healthz, "" if none.
func (d *Daemon) MetricsAddr() string { return d.metricsAddr }

// ConsoleAddr is the address of the web console, "" if none.
func (d *Daemon) ConsoleAddr() string { return d.consoleAddr }

// serveConsole serves the web console on ConsoleListen, if set: the pages
// and the Admin and Audit services of the daemon's gRPC server, transcoded.
func (d *Daemon) serveConsole() error {
	if d.cfg.ConsoleListen == "" {
		return nil
	}
	h, err := console.Handler(d.grpc)
	if err != nil {
		return err
	}
	cl, err := net.Listen("tcp", d.cfg.ConsoleListen)
	if err != nil {
		return fmt.Errorf("listen %s (console): %w", d.cfg.ConsoleListen, err)
	}
	d.consoleAddr = cl.Addr().String()
	d.console = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	tlsOn := d.tlsConf != nil
	if tlsOn {
		// The certificate only: the console asks for no client
		// certificate.
		d.console.TLSConfig = &tls.Config{Certificates: d.tlsConf.Certificates, MinVersion: tls.VersionTLS12}
	}
	go func() {
		var err error
		if tlsOn {
			err = d.console.ServeTLS(cl, "", "") // the certificate in TLSConfig
		} else {
			err = d.console.Serve(cl)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.failed <- fmt.Errorf("console server: %w", err)
		}
	}()
	return nil
}

// consoleURL is where the console is, for the log ("off" if nowhere).
func (d *Daemon) consoleURL() string {
	switch {
	case d.consoleAddr == "":
		return "off"
	case d.cfg.TLSCertFile != "":
		return "https://" + d.consoleAddr + "/"
	default:
		return "http://" + d.consoleAddr + "/"
	}
}

// Hub is the hub the daemon serves.
func (d *Daemon) Hub() *hub.Server { return d.hub }

// Store is the daemon's ledger.
func (d *Daemon) Store() *ledger.Store { return d.store }

// Signer is the daemon's checkpoint signer; VerifierKey its verifier key.
func (d *Daemon) Signer() *checkpoint.Signer { return d.signer }

// VerifierKey is the key that checks the daemon's signed checkpoints.
func (d *Daemon) VerifierKey() string { return d.vkey }

// Audit is the Audit service the daemon serves.
func (d *Daemon) Audit() *audit.Server { return d.audit }

// Projections is the daemon's projection runner.
func (d *Daemon) Projections() *projections.Runner { return d.runner }

// Shutdown stops the daemon: the hub tells every session to reconnect
// later and records every end (closing what remains when the time is
// nearly up), then the servers stop, then the projections write their
// checkpoint and the ledger closes. It returns by ctx's deadline (the
// ledger's own close may take a moment past it to finish its last
// commit) and is idempotent.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stopOnce.Do(func() { d.stopErr = d.shutdown(ctx) })
	return d.stopErr
}

func (d *Daemon) shutdown(ctx context.Context) error {
	d.stopWatching()
	if d.tokens != nil {
		d.tokens.close()
	}
	var errs []error
	if d.hub != nil {
		if err := d.hub.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if d.audit != nil {
		d.audit.Close() // end --follow streams so GracefulStop does not wait for them
	}
	if d.console != nil {
		// Before the gRPC server: the console's calls run on it.
		if err := d.console.Shutdown(ctx); err != nil {
			_ = d.console.Close()
		}
	}
	if d.grpc != nil {
		// Every session has ended by now; what GracefulStop still waits
		// for is unary calls in flight and the clients' answers to its
		// GOAWAY ping (grpc-go waits up to 5 s for those). A loaded
		// machine's slow answers must not hold the ledger open while
		// clients retry, so the wait is short, as it was before the
		// daemon type (see docs/performance.md, "Hub seams").
		grace, cancel := context.WithTimeout(ctx, rpcDrainGrace)
		stopped := make(chan struct{})
		go func() { d.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-grace.Done():
			d.grpc.Stop()
			<-stopped
		}
		cancel()
	}
	if d.wsHTTP != nil {
		// The hub has ended every WebSocket session; its connections
		// finish their close handshakes (at most CloseTimeout each).
		d.ws.Close()
		if err := d.wsHTTP.Shutdown(ctx); err != nil {
			_ = d.wsHTTP.Close()
		}
		if err := d.ws.Wait(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if d.http != nil {
		if err := d.http.Shutdown(ctx); err != nil {
			_ = d.http.Close()
		}
	}
	if d.addr != "" {
		_ = hubapi.RemoveAddrFile(d.cfg.Data)
	}
	if err := d.closeLedger(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeLedger closes the projections (their final checkpoint, bounded by
// ctx), the cluster node (which writes into the ledger) and the ledger.
func (d *Daemon) closeLedger(ctx context.Context) error {
	var errs []error
	if d.signer != nil {
		// Before the ledger closes: it signs the last growth.
		if err := d.signer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the checkpoint signer: %w", err))
		}
	}
	if d.runner != nil {
		if err := d.runner.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close projections: %w", err))
		}
	}
	if d.node != nil {
		if err := d.node.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("leave the cluster: %w", err))
		}
	}
	if d.store != nil {
		head := d.store.Head().Seq
		if err := d.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close ledger: %w", err))
		}
		d.log.Info("hubd stopped", "head", head)
	}
	return errors.Join(errs...)
}

// startSigner loads or creates the checkpoint signing key in the data
// directory and starts signing checkpoints of the ledger's tree.
func (d *Daemon) startSigner() error {
	key, created, err := signkey.LoadOrCreateKey(d.cfg.Data, d.store.LogID())
	if err != nil {
		return err
	}
	path := filepath.Join(d.cfg.Data, signkey.KeyFile)
	if d.vkey, err = signkey.VerifierKey(path); err != nil {
		return err
	}
	if created {
		d.log.Info("created the checkpoint signing key; keep its verifier key off this host (auditq key, hubctl key)", "file", path, "verifier_key", d.vkey)
	}
	d.signer, err = checkpoint.New(checkpoint.Config{Store: d.store, Key: key, Every: d.cfg.Signing.Every,
		Dir: d.cfg.Signing.Dir, Logger: d.log.With("component", "checkpoint")})
	if err != nil {
		return err
	}
	d.signer.Start()
	d.log.Info("signing checkpoints", "log_id", d.store.LogID(), "every", d.cfg.Signing.Every, "dir", d.cfg.Signing.Dir, "verifier_key", d.vkey)
	return nil
}

// registerProcessMetrics adds the Go runtime's and the process's series.
func (d *Daemon) registerProcessMetrics() {
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// registerLedgerMetrics adds the ledger's series to the registry the hub
// writes its own into.
func (d *Daemon) registerLedgerMetrics(commitSeconds prometheus.Histogram) {
	s := d.store
	d.reg.MustRegister(commitSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_ledger_head_seq", Help: "Sequence number of the last durable record."},
			func() float64 { return float64(s.Head().Seq) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_ledger_commits_total", Help: "Group-commit transactions the ledger wrote."},
			func() float64 { return float64(s.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_ledger_records_total", Help: "Records those transactions appended (records/commits is the mean batch)."},
			func() float64 { return float64(s.Stats().Records) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_ledger_offsets_clamped_total", Help: "Consumer-group offsets found past the head of the log (a damaged, edited or truncated ledger) and clamped to it."},
			func() float64 { return float64(s.Stats().OffsetsClamped) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_projections_ahead_of_head_total", Help: "Projection checkpoints and snapshots found past the head of the log at start (not used)."},
			func() float64 {
				if d.runner == nil {
					return 0
				}
				return float64(d.runner.Stats().AheadOfHead)
			}),
	)
}

// MetricsHandler serves the daemon's Prometheus registry.
func (d *Daemon) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{})
}

// httpMux serves /metrics and /healthz: 200 "ok" while the hub serves,
// its ledger takes appends and its projections follow the log; 503 with
// the reason otherwise.
func (d *Daemon) httpMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "not serving: starting", http.StatusServiceUnavailable)
			return
		}
		d.signer.Handler().ServeHTTP(w, r)
	})
	if d.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", d.MetricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !d.ready.Load() {
			http.Error(w, "not serving: starting", http.StatusServiceUnavailable)
			return
		}
		if why := d.healthReason(); why != "" {
			http.Error(w, "not serving: "+why, http.StatusServiceUnavailable)
			return
		}
		res, err := d.hub.Health().Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// healthReason says in a few fixed words why the hub cannot serve, or ""
// when it can. /healthz answers whoever reaches the --metrics address
// without a credential, so the errors themselves (file paths, seqs) are
// not in it: the hub logs them when health changes (the hub cannot
// serve), and the metrics count them.
func (d *Daemon) healthReason() string {
	err := d.hub.Err()
	switch {
	case err == nil:
		return ""
	case errors.Is(err, projections.ErrClosed), errors.Is(err, ledger.ErrClosed):
		return "shutting down"
	case d.store.Err() != nil:
		return "the ledger failed"
	case d.runner.Err() != nil:
		return "the projections stopped"
	case d.node != nil && d.node.Err() != nil:
		return "the cluster's log is unavailable"
	case errors.Is(err, projections.ErrStalled):
		return "the projections are behind the log"
	}
	return "unhealthy"
}

// IsLoopback reports whether a listen address accepts only local
// connections. An empty host or a wildcard listens everywhere.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
