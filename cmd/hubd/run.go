package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/version"
	"github.com/sessionledger/sessionledger/ledger/cluster"
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
	var help errHelp
	if errors.As(err, &help) {
		fmt.Fprintln(stderr, strings.TrimRight(help.text, "\n"))
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

// serve runs the daemon until a signal (or a failed server) stops it.
func serve(o *options, log *slog.Logger, signals <-chan os.Signal) (int, error) {
	d, err := daemon.New(daemonConfig(o, log))
	if err != nil {
		return exitUsage, err
	}
	// SIGHUP re-reads the admin tokens and the client token keys; the
	// other signals stop hubd.
	sig, hups, stopSplit := splitHangups(signals)
	defer stopSplit()
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
	err = d.Start(startCtx)
	close(startDone)
	caught, signalled := <-startSig
	cancelStart()
	if err != nil {
		if signalled {
			return exitOK, nil // stopped on request before serving anything
		}
		return exitFailure, err
	}

	code := exitOK
	var runErr error
	for !signalled && runErr == nil {
		select {
		case caught = <-sig:
			signalled = true
		case <-hups:
			log.Info("SIGHUP: re-reading the admin tokens and client token keys")
			_ = d.Reload() // it logs what it could not read; the credentials in force stay
		case err := <-d.Failed():
			runErr = err
			code = exitFailure
			log.Error("server failed; shutting down", "err", err)
		}
	}
	if runErr == nil {
		log.Info("shutting down: telling every session to reconnect later; a second signal forces it", "signal", caught.String(), "sessions", d.Hub().Live())
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
	if err := d.Shutdown(ctx); err != nil {
		log.Error("shutdown was not clean", "err", err)
		code = exitFailure
	}
	return code, runErr
}

// splitHangups passes the signals of in on to stop, but SIGHUP to hup
// (keeping one if nobody is reading), until done is called.
func splitHangups(in <-chan os.Signal) (stop <-chan os.Signal, hup <-chan struct{}, done func()) {
	s, h, quit, over := make(chan os.Signal, 2), make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(over)
		for {
			select {
			case x := <-in:
				if x == syscall.SIGHUP {
					select {
					case h <- struct{}{}:
					default:
					}
					continue
				}
				select {
				case s <- x:
				case <-quit:
					return
				}
			case <-quit:
				return
			}
		}
	}()
	return s, h, func() { close(quit); <-over }
}

// daemonConfig turns hubd's options into the daemon's configuration.
func daemonConfig(o *options, log *slog.Logger) daemon.Config {
	c := daemon.Config{
		Data:           o.data,
		Listen:         o.listen,
		Metrics:        o.metrics,
		Pprof:          o.pprof,
		ConsoleListen:  o.console,
		JWTSecretFile:  o.jwtSecret,
		TLSCertFile:    o.tlsCert,
		TLSKeyFile:     o.tlsKey,
		MaxMessageSize: o.maxMsgBytes,
		MaxStreams:     o.maxStreams,
		Conn: daemon.ConnOptions{
			ReadBufferSize: readBufferOption(o.readBuffer), WriteBufferSize: o.writeBuffer, PrivateWriteBuffer: o.privateWriteBuffer,
			StreamWindow: int32(o.streamWindow), ConnWindow: int32(o.connWindow), DynamicWindow: o.dynamicWindow,
			MaxConnectionAge: o.maxConnAge, MaxConnectionAgeGrace: o.maxConnAgeGrace,
			KeepaliveTime: o.keepaliveTime, KeepaliveTimeout: o.keepaliveWait, KeepaliveMinTime: o.keepaliveMinTime,
		},
		Signing:   daemon.Signing{Every: o.signedCheckpointEvery, Dir: o.signedCheckpointDir},
		WSListen:  o.wsListen,
		WSNoDemo:  !o.wsDemo,
		WebSocket: hub.WebSocketConfig{AllowedOrigins: o.origins(), HandshakeTimeout: o.wsHandshakeTimeout},
		Hub: hub.Config{
			Node:                  o.node,
			HeartbeatInterval:     o.heartbeat,
			IdleTimeout:           o.idleTimeout,
			HelloTimeout:          o.helloTimeout,
			Policy:                projections.Policy{MaxPerUser: o.maxPerUser, OnePerDevice: o.onePerDevice},
			MaxSessions:           o.maxSessions,
			UserConnectsPerMinute: o.connectsPerMin,
			UserConnectBurst:      o.connectBurst,
			RejectWindow:          o.rejectWindow,
			NotifyBuffer:          o.notifyBuffer,
			GracefulTimeout:       o.gracefulTimeout,
			ClientFrameRate:       o.frameRate,
			ShutdownReconnect:     o.shutdownReconnect,
			ShutdownJitter:        o.shutdownJitter,
			ResumeWindow:          o.resumeWindow,
			RedeliveryLimit:       o.redeliveryLimit,
		},
		Projections: projections.Config{
			CheckpointEvery: o.checkpointEvery,
			SnapshotEvery:   o.snapshotEvery,
			StallAfter:      o.stallTimeout,
		},
		Cluster:   clusterConfig(o),
		Advertise: o.advertise,
		Logger:    log,
	}
	withAuth(&c, o)
	return c
}

// withAuth adds the client token, role and mutual TLS settings (issue 18).
func withAuth(c *daemon.Config, o *options) {
	c.JWTPublicKeyFile, c.JWKSFile = o.jwtPublicKey, o.jwtJWKS
	c.ClientCAFile, c.ClientCertsForClients = o.clientCA, o.clientCAClients
	c.Hub.JWTIssuer, c.Hub.JWTAudience, c.Hub.MaxTokenTTL = o.jwtIssuer, o.jwtAudience, o.jwtMaxTTL
	c.Hub.NoReconnectWindow, c.WatchInterval = o.noReconnectWindow, o.watchInterval
	if o.noReconnectWindow == 0 {
		c.Hub.NoReconnectWindow = -1 // off; the hub's zero means its default
	}
	if o.watchInterval == 0 {
		c.WatchInterval = -1 // SIGHUP only; the daemon's zero means its default
	}
}

// readBufferOption maps --grpc-read-buffer (0: none) onto
// daemon.ConnOptions.ReadBufferSize (0: the default, negative: none).
func readBufferOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func versionLine() string { return version.Line("hubd") }

// clusterConfig is the cluster part of the options, nil on a single node.
func clusterConfig(o *options) *cluster.Config {
	switch {
	case o.natsURLs != "":
		return &cluster.Config{URLs: strings.Split(o.natsURLs, ","), Replicas: o.replicas, Heartbeat: o.clusterHeartbeat, LostAfter: o.lostAfter}
	case o.embedNATS:
		emb := &cluster.EmbedConfig{Listen: o.natsListen, ClusterListen: o.natsClusterListen}
		if o.natsRoutes != "" {
			emb.Routes = strings.Split(o.natsRoutes, ",")
		}
		return &cluster.Config{Embed: emb, Replicas: o.replicas, Heartbeat: o.clusterHeartbeat, LostAfter: o.lostAfter}
	}
	return nil
}
