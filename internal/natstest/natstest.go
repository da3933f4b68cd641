// Package natstest runs NATS servers with JetStream inside a test process,
// routed to each other on 127.0.0.1, for tests of hubd against an existing
// NATS deployment (--nats). A server can be stopped and started again on
// the same ports and store, as an operator restarts one.
package natstest

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sessionledger/sessionledger/internal/testports"
)

// Server is one NATS server of a test cluster.
type Server struct {
	Name string
	// URL is the client URL; it stays the same across Stop and Start.
	URL string

	opts *server.Options
	mu   sync.Mutex
	ns   *server.Server
}

// Cluster starts n NATS servers with JetStream routed to each other and
// stops them when the test ends. They do not advertise each other to
// clients: a client given one URL stays on it (so a proxy in front of it
// can cut the client off, and a server stopped takes its clients' only
// connection with it).
func Cluster(t testing.TB, n int) []*Server {
	t.Helper()
	// Reserved until the test ends: the addresses must be known before
	// any server starts (each lists the others as routes, and a restarted
	// one must come back where it was), and no other test may take a
	// stopped server's port while its clients and peers dial it.
	clusterPorts, clientPorts := testports.Ports(t, n), testports.Ports(t, n)
	var routes []string
	for _, p := range clusterPorts {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(p))
	}
	out := make([]*Server, n)
	for i := range out {
		s := &Server{Name: fmt.Sprintf("nats-%d", i), opts: &server.Options{
			ServerName: fmt.Sprintf("nats-%d", i), Host: "127.0.0.1", Port: clientPorts[i], JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
			Cluster: server.ClusterOpts{Name: "test", Host: "127.0.0.1", Port: clusterPorts[i], NoAdvertise: true},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}}
		s.URL = fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i])
		s.Start(t)
		t.Cleanup(s.Stop)
		out[i] = s
	}
	return out
}

// Start starts the server (again), on its ports and store, and waits until
// it takes connections.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns != nil {
		return
	}
	ns, err := server.NewServer(s.opts)
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("NATS server %s did not start", s.Name)
	}
	s.ns = ns
}

// Stop shuts the server down and waits until it has; a stopped server
// stays stopped.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.ns = nil
}
