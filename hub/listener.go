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
	if rc := newReadyConn(tc); rc != nil {
		return rc, nil
	}
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

// A trackedConn over a TCP connection is a readyConn: gRPC then reads it
// into a buffer from a shared pool only once data has arrived, as it does
// an unwrapped TCP connection, instead of keeping a read buffer of its own
// (32 KiB by default) per connection for the connection's lifetime, most
// of which an idle connection spends waiting.
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
