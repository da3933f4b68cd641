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
	"github.com/sessionledger/sessionledger/ledger"
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
	// JWTSecretFile holds the HS256 secret client tokens are checked with.
	// Without it identities are taken from Hello as sent, which is allowed
	// on a loopback listener only.
	JWTSecretFile string
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
	// Hub configures the hub. The daemon fills Metrics and Logger, and
	// ResumeKey, JWTSecret and AdminTokens unless they are set (from the
	// data directory and JWTSecretFile).
	Hub hub.Config
	// Projections configures the projection runner. The daemon fills
	// OnChange and Logger.
	Projections projections.Config
	// Logger (default slog.Default()).
	Logger *slog.Logger
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

	store  *ledger.Store
	pub    *ledger.Publisher
	runner *projections.Runner
	hub    *hub.Server
	audit  *audit.Server
	grpc   *grpc.Server
	http   *http.Server
	ws     *hub.WebSocket
	wsHTTP *http.Server
	reg    *prometheus.Registry

	addr, metricsAddr, wsAddr string
	failed                    chan error // a server that stopped on its own

	stopOnce sync.Once
	stopErr  error
}

// New checks cfg and reads the files it names that are the operator's to
// get right (the JWT secret, the TLS certificate), touching nothing: an
// error here is a usage error.
func New(cfg Config) (*Daemon, error) {
	cfg.setDefaults()
	d := &Daemon{cfg: cfg, log: cfg.Logger, failed: make(chan error, 2), jwtSecret: cfg.Hub.JWTSecret, tlsCreds: cfg.Creds}
	if cfg.JWTSecretFile != "" {
		b, err := os.ReadFile(cfg.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		d.jwtSecret = bytes.TrimSpace(b)
		if len(d.jwtSecret) < 32 {
			return nil, fmt.Errorf("--jwt-secret-file %s: the secret is %d bytes; want at least 32", cfg.JWTSecretFile, len(d.jwtSecret))
		}
	} else if d.jwtSecret == nil && !IsLoopback(cfg.Listen) {
		return nil, fmt.Errorf("refusing to listen on %s without --jwt-secret-file: clients would be trusted as whatever user they claim; listen on 127.0.0.1 or configure a JWT secret", cfg.Listen)
	} else if d.jwtSecret == nil && cfg.WSListen != "" && !IsLoopback(cfg.WSListen) {
		return nil, fmt.Errorf("refusing to serve WebSocket on %s without --jwt-secret-file: clients would be trusted as whatever user they claim; listen on 127.0.0.1 or configure a JWT secret", cfg.WSListen)
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.TLSCertFile != "" {
		creds, err := credentials.NewServerTLSFromFile(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		d.tlsCreds = creds
	}
	return d, nil
}

// Start opens the data directory and the ledger, brings the projections
// up to the head, starts the hub and serves. ctx bounds the start (a long
// replay); on error everything Start opened is closed again.
func (d *Daemon) Start(ctx context.Context) (err error) {
	cfg, log := d.cfg, d.log
	if d.jwtSecret == nil {
		log.Warn("no --jwt-secret-file: client identities are taken from Hello as sent (allowed on a loopback listener only)", "listen", cfg.Listen)
	}
	if d.tlsCreds == nil && !IsLoopback(cfg.Listen) {
		log.Warn("listening on a non-loopback address without TLS: admin tokens, client tokens and notifications cross the network in clear text; use --tls-cert and --tls-key", "listen", cfg.Listen)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	hc := cfg.Hub
	if hc.AdminTokens == nil {
		tokens, created, err := hubapi.LoadOrCreateAdminTokens(cfg.Data)
		if err != nil {
			return err
		}
		if created {
			log.Info("created an admin token; hubctl and auditq read it from there", "file", filepath.Join(cfg.Data, hubapi.AdminTokenFile))
		}
		hc.AdminTokens = tokens
	}
	if hc.ResumeKey == nil {
		if hc.ResumeKey, err = hub.LoadOrCreateResumeKey(cfg.Data); err != nil {
			return err
		}
	}

	dbPath := filepath.Join(cfg.Data, "ledger.db")
	store, err := ledger.Open(dbPath, &ledger.Options{Logger: log.With("component", "ledger")})
	if errors.Is(err, ledger.ErrLocked) {
		return fmt.Errorf("%s is locked: another hubd is using data directory %s", dbPath, cfg.Data)
	}
	if err != nil {
		return fmt.Errorf("open ledger %s: %w", dbPath, err)
	}
	d.store, d.pub = store, ledger.NewPublisher(store)
	defer func() {
		if err != nil {
			d.closeLedger(context.Background())
		}
	}()

	d.reg = prometheus.NewRegistry()
	hc.JWTSecret, hc.Metrics = d.jwtSecret, d.reg
	hc.Logger = log.With("component", "hub")
	pc := cfg.Projections
	pc.Logger = log.With("component", "projections")
	// The runner's change feed is the hub's Enforce; the hub is made
	// first (New does no I/O) and the runner calls it only once started.
	var h *hub.Server
	pc.OnChange = func(ch projections.Change) { h.Enforce(ch) }
	d.runner = projections.NewRunner(store, pc)
	if h, err = hub.New(hub.Ports{Publisher: d.pub, Projection: d.runner, History: store}, hc); err != nil {
		return err
	}
	d.hub = h
	d.registerMetrics()

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
		// Clients may ping to keep NATs open, but not flood.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	if d.tlsCreds != nil {
		gopts = append(gopts, grpc.Creds(d.tlsCreds))
	}
	gopts = append(gopts, cfg.GRPCOptions...)
	d.grpc = grpc.NewServer(gopts...)
	h.Register(d.grpc)
	d.audit = audit.NewServer(store)
	audit.RegisterServer(d.grpc, d.audit) // admin-token protected by the hub's interceptors
	reflection.Register(d.grpc)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = h.Shutdown(ctx)
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	d.addr = ln.Addr().String()
	if cfg.Metrics != "" {
		ml, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			ln.Close()
			_ = h.Shutdown(ctx)
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
	if cfg.WSListen != "" {
		if err := d.startWebSocket(); err != nil {
			ln.Close()
			if d.http != nil {
				d.http.Close()
			}
			_ = h.Shutdown(ctx)
			return err
		}
	}
	go func() {
		if err := h.ServeGRPC(d.grpc, hub.NewListener(ln)); err != nil {
			d.failed <- fmt.Errorf("grpc server: %w", err)
		}
	}()
	metricsAddr, wsAddr := d.metricsAddr, d.wsAddr
	if metricsAddr == "" {
		metricsAddr = "off"
	}
	if wsAddr == "" {
		wsAddr = "off"
	}
	log.Info("hubd listening", "grpc", d.addr, "websocket", wsAddr, "metrics", metricsAddr, "data", cfg.Data, "node", h.Node(),
		"tls", d.tlsCreds != nil, "jwt", d.jwtSecret != nil, "head", store.Head().Seq)
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
	var tlsConf *tls.Config
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
	if tlsConf != nil {
		wl = tls.NewListener(wl, tlsConf)
	}
	d.ws, d.wsAddr = ws, wl.Addr().String()
	handshake := wc.HandshakeTimeout
	if handshake <= 0 {
		handshake = 10 * time.Second
	}
	d.wsHTTP = &http.Server{Handler: mux, ReadHeaderTimeout: handshake, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
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

// Hub is the hub the daemon serves.
func (d *Daemon) Hub() *hub.Server { return d.hub }

// Store is the daemon's ledger.
func (d *Daemon) Store() *ledger.Store { return d.store }

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
	var errs []error
	if d.hub != nil {
		if err := d.hub.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if d.audit != nil {
		d.audit.Close() // end --follow streams so GracefulStop does not wait for them
	}
	if d.grpc != nil {
		stopped := make(chan struct{})
		go func() { d.grpc.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			d.grpc.Stop()
			<-stopped
		}
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
	if err := d.closeLedger(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// closeLedger closes the projections (their final checkpoint, bounded by
// ctx) and the ledger.
func (d *Daemon) closeLedger(ctx context.Context) error {
	var errs []error
	if d.runner != nil {
		if err := d.runner.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("close projections: %w", err))
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

// registerMetrics adds the ledger's series and the process's to the
// registry the hub writes its own into.
func (d *Daemon) registerMetrics() {
	s := d.store
	d.reg.MustRegister(
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sessionledger_ledger_head_seq", Help: "Sequence number of the last durable record."},
			func() float64 { return float64(s.Head().Seq) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_ledger_commits_total", Help: "Group-commit transactions the ledger wrote."},
			func() float64 { return float64(s.Stats().Commits) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sessionledger_ledger_records_total", Help: "Records those transactions appended (records/commits is the mean batch)."},
			func() float64 { return float64(s.Stats().Records) }),
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
	if d.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", d.MetricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := d.hub.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
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
