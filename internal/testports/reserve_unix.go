//go:build unix

package testports

import (
	"fmt"
	"syscall"
)

// socket is a socket bound to the reserved port, not listening.
type socket int

func (s socket) Close() error { return syscall.Close(int(s)) }

// reserve binds a new socket with SO_REUSEADDR to 127.0.0.1 port 0 and
// keeps it (see the package doc).
func reserve() (int, holder, error) {
	syscall.ForkLock.RLock() // no child started meanwhile inherits it
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return 0, nil, fmt.Errorf("reserve a port: %w", err)
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
		return 0, nil, fmt.Errorf("reserve a port: %v (address %v)", err, sa)
	}
	return in4.Port, socket(fd), nil
}

// Bindable binds a socket without SO_REUSEADDR to 127.0.0.1:port, as
// another program's explicit bind would (a bind of port 0 is stricter
// still), and closes it: syscall.EADDRINUSE while a Reservation or a
// listener holds the port. For tests of what holds a port.
func Bindable(port int) error {
	syscall.ForkLock.RLock()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer syscall.Close(fd)
	return syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
}
