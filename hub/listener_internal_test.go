//go:build unix

package hub

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
)

// readyReader is the method grpc-go's framer looks for on a connection to
// read it into a pooled buffer once data has arrived.
type readyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

// TestListenerConnReadsOnReady: a TCP connection the Listener accepts
// reads on readiness into a pooled buffer, reports the peer's close as
// io.EOF, and can still be aborted by its remote address.
func TestListenerConnReadsOnReady(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner)
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rr, ok := c.(readyReader)
	if !ok {
		t.Fatalf("accepted %T; want a connection gRPC can read on readiness", c)
	}
	go func() {
		time.Sleep(20 * time.Millisecond) // the read waits for it
		_, _ = peer.Write([]byte("hello"))
	}()
	pool := mem.DefaultBufferPool()
	buf, n, err := rr.ReadOnReady(1024, pool)
	if err != nil || !bytes.Equal((*buf)[:n], []byte("hello")) {
		t.Fatalf("ReadOnReady = %q, %v; want \"hello\", nil", (*buf)[:n], err)
	}
	pool.Put(buf)

	// Aborting by the remote address closes it: the next read fails.
	if !l.abort(peer.LocalAddr().String()) {
		t.Fatal("abort did not find the connection")
	}
	if _, _, err := rr.ReadOnReady(1024, pool); err == nil {
		t.Fatal("read after abort: got nil error; want one")
	}

	// The peer's close is io.EOF.
	peer2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	peer2.Close()
	if _, _, err := c2.(readyReader).ReadOnReady(1024, pool); err != io.EOF {
		t.Fatalf("read after the peer closed: got %v; want io.EOF", err)
	}
}

// TestGRPCReadsListenerConnOnReady: gRPC serving on the Listener uses the
// connection's ReadOnReady, so an idle connection waits in it with no read
// buffer of its own (and not in a bufio.Reader holding 32 KiB).
func TestGRPCReadsListenerConnOnReady(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner)
	g := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	served := make(chan struct{})
	go func() { _ = g.Serve(l); close(served) }()
	defer func() { g.Stop(); <-served }()
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var b strings.Builder
		_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
		if strings.Contains(b.String(), "hub.(*readyConn).ReadOnReady") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine waits in readyConn.ReadOnReady: gRPC reads the connection some other way\n%s", b.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
