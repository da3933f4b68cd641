package testports

import (
	"net"
	"strconv"
	"sync"
	"testing"
)

// Reservation is one reserved 127.0.0.1 port. Its methods are safe for
// concurrent use.
type Reservation struct {
	port int

	mu   sync.Mutex
	hold holder // nil once released
}

// holder is what keeps the port: a socket where the system allows it.
type holder interface{ Close() error }

// Reserve reserves a free 127.0.0.1 port until Release; for programs, such
// as hubbench, that manage the ports of the servers they start. Tests use
// Addr or Port.
func Reserve() (*Reservation, error) {
	port, h, err := reserve()
	if err != nil {
		return nil, err
	}
	return &Reservation{port: port, hold: h}, nil
}

// Port is the reserved port.
func (r *Reservation) Port() int { return r.port }

// Addr is the reserved port's address, "127.0.0.1:port".
func (r *Reservation) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// Release gives the port back. Release it after the servers on it have
// stopped, or the port may be taken between one of them stopping and its
// clients giving up. Calling Release again does nothing.
func (r *Reservation) Release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hold == nil {
		return nil
	}
	err := r.hold.Close()
	r.hold = nil
	return err
}

// Addr reserves a 127.0.0.1 port until tb and its cleanups end and returns
// its address, "127.0.0.1:port", failing tb if it cannot. A cleanup
// registered after this call (a server's stop) runs before the release.
func Addr(tb testing.TB) string {
	tb.Helper()
	return reserveFor(tb).Addr()
}

// Port is Addr's port.
func Port(tb testing.TB) int {
	tb.Helper()
	return reserveFor(tb).Port()
}

// Ports is Port n times: ports for servers whose addresses must all be
// known before any of them starts (each lists the others, as NATS routes
// do).
func Ports(tb testing.TB, n int) []int {
	tb.Helper()
	out := make([]int, n)
	for i := range out {
		out[i] = Port(tb)
	}
	return out
}

func reserveFor(tb testing.TB) *Reservation {
	tb.Helper()
	r, err := Reserve()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Release() })
	return r
}
