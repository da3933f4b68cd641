package main

import (
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// reserveAddr returns a loopback address whose port stays this run's until
// releasePorts: a socket bound to it with SO_REUSEADDR and not listening.
// The kernel gives a reserved port to no other bind of port 0 (another
// program's server), while hubd and its NATS server, which listen with
// SO_REUSEADDR too, can listen on it; a connect while none listens is
// refused as on a free port. So no other program takes the port between
// its choice and hubd's listen, and the clients that dial hubd's address
// while it restarts (the storm) or after it was killed can only reach
// hubd, never another program's server that took the port meanwhile (a
// test's, in a parallel `go test ./...`, which would record their
// sessions).
func (b *bench) reserveAddr() (string, error) {
	syscall.ForkLock.RLock() // no child inherits it
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return "", fmt.Errorf("reserve a port: %w", err)
	}
	var sa syscall.Sockaddr
	if err = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err == nil {
		if err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
			sa, err = syscall.Getsockname(fd)
		}
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if err != nil || !ok {
		syscall.Close(fd)
		return "", fmt.Errorf("reserve a port: %v (address %v)", err, sa)
	}
	b.reserved = append(b.reserved, fd)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(in4.Port)), nil
}

// releasePorts gives back the ports reserveAddr reserved.
func (b *bench) releasePorts() {
	for _, fd := range b.reserved {
		syscall.Close(fd)
	}
	b.reserved = nil
}
