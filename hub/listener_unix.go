//go:build unix

package hub

import (
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

// readyConn is a trackedConn that gRPC's framer can read without pinning
// a buffer while it waits: it implements the method of grpc-go's internal
// readyreader.Reader, which gRPC looks for on the connection it serves
// (and otherwise uses only on a bare *net.TCPConn), by a non-blocking read
// on the socket once it is readable.
type readyConn struct {
	*trackedConn
	raw syscall.RawConn

	// The one reader's state during ReadOnReady (gRPC reads a connection
	// from one goroutine), kept here so a read allocates nothing.
	bufSize int
	pool    mem.BufferPool
	buf     *[]byte
	n       int
	err     error
	doRead  func(fd uintptr) bool
}

// newReadyConn returns tc as a readyConn if it is a TCP connection, nil if
// not (a TLS or test connection is read as it is).
func newReadyConn(tc *trackedConn) *readyConn {
	c, ok := tc.Conn.(*net.TCPConn)
	if !ok {
		return nil
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	rc := &readyConn{trackedConn: tc, raw: raw}
	rc.doRead = func(fd uintptr) bool {
		rc.buf = rc.pool.Get(rc.bufSize)
		rc.n, rc.err = syscall.Read(int(fd), *rc.buf)
		if rc.err != nil {
			rc.pool.Put(rc.buf)
			rc.buf = nil
		}
		// Not readable yet: RawConn.Read waits for it and calls again.
		return rc.err != syscall.EAGAIN && rc.err != syscall.EWOULDBLOCK
	}
	return rc
}

// ReadOnReady waits until the connection is readable, then reads up to
// bufSize bytes into a buffer from pool and returns it (the caller puts
// it back), the bytes read, and io.EOF when the peer closed.
func (c *readyConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	c.bufSize, c.pool = bufSize, pool
	err := c.raw.Read(c.doRead)
	buf, n, readErr := c.buf, c.n, c.err
	c.buf, c.pool, c.err = nil, nil, nil
	switch {
	case err != nil:
		if buf != nil {
			pool.Put(buf)
		}
		return nil, 0, err
	case readErr != nil:
		return nil, 0, readErr
	case n == 0:
		pool.Put(buf)
		return nil, 0, io.EOF
	}
	return buf, n, nil
}
