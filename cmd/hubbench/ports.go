package main

import "github.com/sessionledger/sessionledger/internal/testports"

// reserveAddr returns a loopback address whose port stays this run's until
// releasePorts (testports.Reserve: a socket bound to it with SO_REUSEADDR
// and not listening). No other program takes the port between its choice
// and hubd's listen, and the clients that dial hubd's address while it
// restarts (the storm) or after it was killed can only reach hubd, never
// another program's server that took the port meanwhile (a test's, in a
// parallel `go test ./...`, which would record their sessions). hubd and
// its NATS server listen on it as on a free port.
func (b *bench) reserveAddr() (string, error) {
	r, err := testports.Reserve()
	if err != nil {
		return "", err
	}
	b.reserved = append(b.reserved, r)
	return r.Addr(), nil
}

// releasePorts gives back the ports reserveAddr reserved.
func (b *bench) releasePorts() {
	for _, r := range b.reserved {
		r.Release()
	}
	b.reserved = nil
}
