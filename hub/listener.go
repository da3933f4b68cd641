package hub

import (
	"net"
	"sync"
)

// Listener wraps a net.Listener and remembers every accepted connection by
// its remote address, so an abort-mode kick can close a client's transport
// at once (the equivalent of ASP.NET's HttpContext.Abort). Serve the hub's
// gRPC server on it.
type Listener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]net.Conn
}

// NewListener wraps l.
func NewListener(l net.Listener) *Listener {
	return &Listener{Listener: l, conns: make(map[string]net.Conn)}
}

// Accept accepts and tracks a connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l, key: c.RemoteAddr().String()}
	l.mu.Lock()
	l.conns[tc.key] = tc
	l.mu.Unlock()
	return tc, nil
}

// abort closes the connection from remote, reporting whether it was found.
// Every stream on that connection ends.
func (l *Listener) abort(remote string) bool {
	l.mu.Lock()
	c, ok := l.conns[remote]
	l.mu.Unlock()
	if ok {
		c.Close()
	}
	return ok
}

type trackedConn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.conns[c.key] == c {
			delete(c.l.conns, c.key)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
