package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/internal/daemon"
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
func serve(o *options, log *slog.Logger, sig <-chan os.Signal) (int, error) {
	d, err := daemon.New(daemonConfig(o, log))
	if err != nil {
		return exitUsage, err
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
	if !signalled {
		select {
		case caught = <-sig:
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

// daemonConfig turns hubd's options into the daemon's configuration.
func daemonConfig(o *options, log *slog.Logger) daemon.Config {
	return daemon.Config{
		Data:           o.data,
		Listen:         o.listen,
		Metrics:        o.metrics,
		Pprof:          o.pprof,
		JWTSecretFile:  o.jwtSecret,
		TLSCertFile:    o.tlsCert,
		TLSKeyFile:     o.tlsKey,
		MaxMessageSize: o.maxMsgBytes,
		WSListen:       o.wsListen,
		WSNoDemo:       !o.wsDemo,
		WebSocket:      hub.WebSocketConfig{AllowedOrigins: o.origins(), HandshakeTimeout: o.wsHandshakeTimeout},
		Hub: hub.Config{
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
		},
		Projections: projections.Config{
			CheckpointEvery: o.checkpointEvery,
			SnapshotEvery:   o.snapshotEvery,
		},
		Logger: log,
	}
}
