//go:build linux

package testports_test

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/internal/testports"
)

// TestPortZeroNeverGetsAReservedPort: many binds of port 0 by listeners as
// servers make them (Go's, with SO_REUSEADDR) are never given a reserved
// port. Were the ports merely free (listened on and closed), some of
// 5,000 binds would land on one of 100 of them: about 18 expected over
// Linux's 28,232 ephemeral ports.
func TestPortZeroNeverGetsAReservedPort(t *testing.T) {
	const reserved, binds = 100, 5000
	held := map[int]bool{}
	for range reserved {
		p := testports.Port(t)
		if held[p] {
			t.Fatalf("port %d reserved twice", p)
		}
		held[p] = true
	}
	for i := range binds {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if held[p] {
			t.Fatalf("bind %d of port 0 got reserved port %d; want a port no one holds", i, p)
		}
	}
}

// TestServersListenOnAReservedPort: a reserved port refuses connects while
// no one listens, takes a server's listener (one at a time), and again
// after the server stopped (a restart); no other socket can bind it until
// it is released, and then one can.
func TestServersListenOnAReservedPort(t *testing.T) {
	r, err := testports.Reserve()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	addr := r.Addr()
	if want := fmt.Sprintf("127.0.0.1:%d", r.Port()); addr != want {
		t.Fatalf("got address %s; want %s", addr, want)
	}
	refused(t, addr, "reserved, nobody listening")
	if err := testports.Bindable(r.Port()); !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("bind of the reserved port by another socket: got %v; want EADDRINUSE", err)
	}
	for round := range 2 { // a server, then the server restarted
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("round %d: a server's listen on the reserved port: %v", round, err)
		}
		if l2, err := net.Listen("tcp", addr); err == nil {
			l2.Close()
			t.Fatalf("round %d: a second listener on the port while the first listens: got it; want EADDRINUSE", round)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: connect to the listener: %v", round, err)
		}
		s, err := l.Accept()
		if err != nil {
			t.Fatalf("round %d: accept: %v", round, err)
		}
		// The client closes first: a server that
		// closed first would leave the port in TIME_WAIT, which the bind
		// below (without SO_REUSEADDR) would take for a holder.
		c.Close()
		if _, err := s.Read(make([]byte, 1)); err == nil {
			t.Fatalf("round %d: read from the closed client: got data; want EOF", round)
		}
		s.Close()
		l.Close()
		refused(t, addr, fmt.Sprintf("round %d, the listener closed", round))
	}
	if err := r.Release(); err != nil {
		t.Fatal(err)
	}
	if err := r.Release(); err != nil {
		t.Fatalf("second Release: %v; want nil", err)
	}
	if err := testports.Bindable(r.Port()); err != nil {
		t.Fatalf("bind after Release: %v; want the port free", err)
	}
}

// TestAddrHeldUntilTestEnds: Addr's port is held while the test runs and
// given back when it ends.
func TestAddrHeldUntilTestEnds(t *testing.T) {
	var port int
	t.Run("holder", func(t *testing.T) {
		addr := testports.Addr(t)
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Sscan(p, &port); err != nil {
			t.Fatal(err)
		}
		if err := testports.Bindable(port); !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("bind of %s while the test runs: got %v; want EADDRINUSE", addr, err)
		}
	})
	if err := testports.Bindable(port); err != nil {
		t.Fatalf("bind of port %d after the test that reserved it ended: %v; want the port free", port, err)
	}
}

func refused(t *testing.T, addr, when string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s: a connect to %s got through; want it refused", when, addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("%s: got %v; want connection refused", when, err)
	}
}
