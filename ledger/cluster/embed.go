package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbedConfig runs a NATS server inside hubd; the embedded servers of the
// cluster's nodes, routed to each other, form the JetStream cluster, so
// three hubd processes make a cluster with no other software.
type EmbedConfig struct {
	// Listen is the client address (HOST:PORT; port 0 picks one).
	Listen string
	// ClusterListen is the address the other servers route to.
	ClusterListen string
	// Routes are the other servers' cluster addresses
	// (nats://HOST:PORT). A server that lists itself is fine.
	Routes []string
	// StoreDir holds JetStream's files (hubd: DATA/nats).
	StoreDir string
	// ClusterName names the NATS cluster (default "sessionledger").
	ClusterName string
}

// embedded is a running embedded NATS server.
type embedded struct {
	ns *server.Server
}

// startEmbedded starts a NATS server with JetStream for node, fsyncing
// every write before it acknowledges it (sync_always: an ack then means
// the record is on the disks of a quorum, as a local append means it is on
// this one), and waits until it accepts connections.
func startEmbedded(cfg EmbedConfig, node string, log *slog.Logger, ready time.Duration) (*embedded, error) {
	host, port, err := splitHostPort(cfg.Listen, "--nats-listen")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: node,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		SyncAlways: true,
		NoSigs:     true,
		MaxPayload: 1 << 20,
	}
	if cfg.ClusterListen != "" {
		chost, cport, err := splitHostPort(cfg.ClusterListen, "--nats-cluster-listen")
		if err != nil {
			return nil, err
		}
		name := cfg.ClusterName
		if name == "" {
			name = "sessionledger"
		}
		opts.Cluster = server.ClusterOpts{Name: name, Host: chost, Port: cport}
		if len(cfg.Routes) > 0 {
			opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
			if len(opts.Routes) != len(cfg.Routes) {
				return nil, fmt.Errorf("--nats-routes %q: want nats://HOST:PORT,...", strings.Join(cfg.Routes, ","))
			}
		}
	} else if len(cfg.Routes) > 0 {
		return nil, errors.New("--nats-routes needs --nats-cluster-listen")
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{log}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(ready) {
		ns.Shutdown()
		ns.WaitForShutdown()
		return nil, fmt.Errorf("embedded NATS server did not accept connections on %s within %s (address in use?)", cfg.Listen, ready)
	}
	return &embedded{ns: ns}, nil
}

// ClientURL is the embedded server's client address.
func (e *embedded) clientURL() string { return e.ns.ClientURL() }

// clusterAddr is the address other servers route to, or "" without a
// cluster listener.
func (e *embedded) clusterAddr() string {
	if a := e.ns.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

func (e *embedded) shutdown() {
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

func splitHostPort(addr, flag string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s %q: %v", flag, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s %q: bad port", flag, addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// natsLogger sends the embedded server's log lines to slog: notices as
// debug (the server is chatty), warnings and errors as such.
type natsLogger struct{ log *slog.Logger }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l natsLogger) Tracef(format string, v ...any)  {}
