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
