//go:build !unix

package testports

import (
	"fmt"
	"net"
)

// nothing holds no port.
type nothing struct{}

func (nothing) Close() error { return nil }

// reserve returns a port that was free a moment ago and holds nothing:
// without Unix's SO_REUSEADDR a held port would refuse the server too.
func reserve() (int, holder, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, fmt.Errorf("reserve a port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nothing{}, nil
}

// Bindable listens on 127.0.0.1:port and closes it: an error while a
// listener holds the port (a Reservation holds nothing here).
func Bindable(port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", fmt.Sprint(port)))
	if err != nil {
		return err
	}
	return l.Close()
}
