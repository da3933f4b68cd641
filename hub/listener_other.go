//go:build !unix

package hub

// readyConn is a trackedConn; only Unix systems read it on readiness.
type readyConn = trackedConn

func newReadyConn(*trackedConn) *readyConn { return nil }
