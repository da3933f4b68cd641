package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/projections"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // a runtime failure (ledger, listener, unclean shutdown)
	exitUsage   = 2 // bad flags or an unsafe configuration
)

// run is hubd's main. sig delivers SIGINT/SIGTERM: the first starts a
// graceful shutdown, a second forces it.
func run(args []string, lookup func(string) (string, bool), stderr io.Writer, sig <-chan os.Signal) int {
	o, err := parseOptions(args, lookup, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "hubd: %v\n", err)
		return exitUsage
	}
	log := newLogger(o, stderr)
	for _, name := range o.deprecated {
		log.Warn("deprecated flag", "flag", "--"+name, "use", "--projection-"+name)
	}
	code, err := serve(o, log, sig)
	if err != nil {
		fmt.Fprintf(stderr, "hubd: %v\n", err)
	}
	return code
}

func newLogger(o *options, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(o.logLevel))
	ho := &slog.HandlerOptions{Level: lvl}
	if o.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

func serve(o *options, log *slog.Logger, sig <-chan os.Signal) (int, error) {
	var jwtSecret []byte
	if o.jwtSecret != "" {
		b, err := os.ReadFile(o.jwtSecret)
		if err != nil {
			return exitUsage, fmt.Errorf("--jwt-secret-file: %w", err)
		}
		jwtSecret = bytes.TrimSpace(b)
		if len(jwtSecret) < 32 {
			return exitUsage, fmt.Errorf("--jwt-secret-file %s: the secret is %d bytes; want at least 32", o.jwtSecret, len(jwtSecret))
		}
	} else if !isLoopback(o.listen) {
		return exitUsage, fmt.Errorf("refusing to listen on %s without --jwt-secret-file: clients would be trusted as whatever user they claim; listen on 127.0.0.1 or configure a JWT secret", o.listen)
	} else {
		log.Warn("no --jwt-secret-file: client identities are taken from Hello as sent (allowed on a loopback listener only)", "listen", o.listen)
	}

	// TLS files are read before the data directory is touched: a bad
	// certificate is a usage error (exit 2) that must leave no trace.
	var tlsCreds credentials.TransportCredentials
	if o.tlsCert != "" {
		creds, err := credentials.NewServerTLSFromFile(o.tlsCert, o.tlsKey)
		if err != nil {
			return exitUsage, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tlsCreds = creds
	} else if !isLoopback(o.listen) {
		log.Warn("listening on a non-loopback address without TLS: admin tokens, client tokens and notifications cross the network in clear text; use --tls-cert and --tls-key", "listen", o.listen)
	}

	if err := os.MkdirAll(o.data, 0o700); err != nil {
		return exitFailure, fmt.Errorf("data directory: %w", err)
	}
	tokens, created, err := hub.LoadOrCreateAdminTokens(o.data)
	if err != nil {
		return exitFailure, err
	}
	if created {
		log.Info("created an admin token; hubctl and auditq read it from there", "file", filepath.Join(o.data, hub.AdminTokenFile))
	}
	resumeKey, err := hub.LoadOrCreateResumeKey(o.data)
	if err != nil {
		return exitFailure, err
	}

	dbPath := filepath.Join(o.data, "ledger.db")
	store, err := ledger.Open(dbPath, &ledger.Options{Logger: log.With("component", "ledger")})
	if errors.Is(err, ledger.ErrLocked) {
		return exitFailure, fmt.Errorf("%s is locked: another hubd is using data directory %s", dbPath, o.data)
	}
	if err != nil {
		return exitFailure, fmt.Errorf("open ledger %s: %w", dbPath, err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("close ledger", "err", err)
		}
	}()
	signer, vkey, err := startSigner(o, store, log)
	if err != nil {
		return exitFailure, err
	}
	defer func() { _ = signer.Close() }() // before the ledger closes: it signs the last growth

	cfg := hub.Config{
		Node:                  o.node,
		HeartbeatInterval:     o.heartbeat,
		IdleTimeout:           o.idleTimeout,
		HelloTimeout:          o.helloTimeout,
		Policy:                projections.Policy{MaxPerUser: o.maxPerUser, OnePerDevice: o.onePerDevice},
		MaxSessions:           o.maxSessions,
		UserConnectsPerMinute: o.connectsPerMin,
		RejectWindow:          o.rejectWindow,
		NotifyBuffer:          o.notifyBuffer,
		GracefulTimeout:       o.gracefulTimeout,
		ShutdownReconnect:     o.shutdownReconnect,
		ShutdownJitter:        o.shutdownJitter,
		ResumeWindow:          o.resumeWindow,
		RedeliveryLimit:       o.redeliveryLimit,
		ResumeKey:             resumeKey,
		JWTSecret:             jwtSecret,
		AdminTokens:           tokens,
		Projections: projections.Config{
			CheckpointEvery: o.checkpointEvery,
			SnapshotEvery:   o.snapshotEvery,
			Logger:          log.With("component", "projections"),
		},
		Logger: log.With("component", "hub"),
	}
	// Replaying a long ledger may take a while; a signal aborts it. A
	// signal that arrives as the start completes is not lost: it becomes
	// the shutdown signal.
	startCtx, cancelStart := context.WithCancel(context.Background())
	startDone := make(chan struct{})
	startSig := make(chan os.Signal, 1)
	go func() {
		defer close(startSig)
		select {
		case s := <-sig:
			log.Warn("signal during start-up; stopping", "signal", s.String())
			startSig <- s
			cancelStart()
		case <-startDone:
		}
	}()
	begin := time.Now()
	srv, err := hub.New(startCtx, store, cfg)
	close(startDone)
	caught, signalled := <-startSig
	cancelStart()
	if err != nil {
		if signalled {
			return exitOK, nil // stopped on request before serving anything
		}
		return exitFailure, err
	}
	cpSeq, replayed := srv.Projections().StartInfo()
	log.Info("projections ready", "applied", srv.Projections().Applied(), "checkpoint", cpSeq, "replayed", replayed, "took", time.Since(begin).Round(time.Millisecond))

	gopts := append(srv.ServerOptions(),
		grpc.MaxRecvMsgSize(o.maxMsgBytes),
		// Clients may ping to keep NATs open, but not flood.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
	)
	if tlsCreds != nil {
		gopts = append(gopts, grpc.Creds(tlsCreds))
	}
	g := grpc.NewServer(gopts...)
	srv.Register(g)
	auditSrv := audit.NewServer(store, audit.WithVerifierKey(vkey))
	audit.RegisterServer(g, auditSrv) // admin-token protected by srv's interceptors
	reflection.Register(g)

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		_ = srv.Shutdown(context.Background())
		return exitFailure, fmt.Errorf("listen %s: %w", o.listen, err)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(g, hub.NewListener(ln)) }()

	var hs *http.Server
	metricsAddr := "off"
	if o.metrics != "off" && o.metrics != "" {
		ml, err := net.Listen("tcp", o.metrics)
		if err != nil {
			g.Stop()
			_ = srv.Shutdown(context.Background())
			return exitFailure, fmt.Errorf("listen %s (metrics): %w", o.metrics, err)
		}
		metricsAddr = ml.Addr().String()
		hs = &http.Server{Handler: httpMux(srv, signer, o.pprof), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := hs.Serve(ml); err != nil && !errors.Is(err, http.ErrServerClosed) {
				serveErr <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	log.Info("hubd listening", "grpc", ln.Addr().String(), "metrics", metricsAddr, "data", o.data, "node", o.node,
		"tls", o.tlsCert != "", "jwt", jwtSecret != nil, "head", store.Head().Seq)

	code := exitOK
	var runErr error
	if !signalled {
		select {
		case caught = <-sig:
		case err := <-serveErr:
			runErr = err
			code = exitFailure
			log.Error("server failed; shutting down", "err", err)
		}
	}
	if runErr == nil {
		log.Info("shutting down: telling every session to reconnect later; a second signal forces it", "signal", caught.String(), "sessions", srv.Live())
	}

	// Shutdown: every session gets Disconnect{server_shutdown, reconnect
	// after a jittered delay} and its end is recorded; a second signal or
	// the timeout closes what remains at once.
	ctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	go func() {
		select {
		case s := <-sig:
			log.Warn("second signal: forcing shutdown", "signal", s.String())
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown was not clean", "err", err)
		code = exitFailure
	}
	auditSrv.Close() // end --follow streams so GracefulStop does not wait for them
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		g.Stop()
		<-stopped
	}
	if hs != nil {
		hctx, hcancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(hctx)
		hcancel()
	}
	log.Info("hubd stopped", "head", store.Head().Seq)
	return code, runErr
}

// startSigner loads or creates the checkpoint signing key in the data
// directory and starts signing checkpoints of the ledger's tree; it returns
// the verifier key.
func startSigner(o *options, store *ledger.Store, log *slog.Logger) (*checkpoint.Signer, string, error) {
	key, created, err := checkpoint.LoadOrCreateKey(o.data, store.LogID())
	if err != nil {
		return nil, "", err
	}
	vkey, err := checkpoint.VerifierKey(filepath.Join(o.data, checkpoint.KeyFile))
	if err != nil {
		return nil, "", err
	}
	if created {
		log.Info("created the checkpoint signing key; keep its verifier key off this host (auditq key, hubctl key)",
			"file", filepath.Join(o.data, checkpoint.KeyFile), "verifier_key", vkey)
	}
	signer, err := checkpoint.New(checkpoint.Config{Store: store, Key: key, Every: o.signedCheckpointEvery,
		Dir: o.signedCheckpointDir, Logger: log.With("component", "checkpoint")})
	if err != nil {
		return nil, "", err
	}
	signer.Start()
	log.Info("signing checkpoints", "log_id", store.LogID(), "every", o.signedCheckpointEvery, "dir", o.signedCheckpointDir, "verifier_key", vkey)
	return signer, vkey, nil
}

// httpMux serves /metrics, /healthz and /checkpoint (the latest signed
// checkpoint): /healthz is 200 "ok" while the hub serves, its ledger takes
// appends and its projections follow the log; 503 with the reason
// otherwise.
func httpMux(srv *hub.Server, signer *checkpoint.Signer, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/checkpoint", signer.Handler())
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", srv.MetricsHandler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		res, err := srv.Health().Check(r.Context(), &healthpb.HealthCheckRequest{})
		if err != nil || res.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			http.Error(w, "not serving", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}
