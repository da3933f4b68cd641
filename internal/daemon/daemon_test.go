package daemon_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testtls"
)

// TestOffLoopbackNeedsClientKeys: on an address other machines can reach,
// hubd refuses to start without client token keys, and starts with any
// one of them: a public key file alone (no HS256 secret) will do.
func TestOffLoopbackNeedsClientKeys(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwt.pub")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "refusing to listen") {
		t.Fatalf("off loopback without keys: %v; want refused", err)
	}
	if _, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "0.0.0.0:0", JWTPublicKeyFile: path}); err != nil {
		t.Fatalf("off loopback with a public key file: %v; want accepted", err)
	}
}

// TestTLSFilesReadOnce: New reads the certificate, its key and the client
// CA; with the files gone before Start, the gRPC listener, the WebSocket
// listener and the console all serve that certificate, and the WebSocket
// listener asks for a client certificate as the gRPC one does.
func TestTLSFilesReadOnce(t *testing.T) {
	dir := t.TempDir()
	srv := testtls.SelfSigned(t)
	ca := testtls.NewCA(t)
	certFile, keyFile, caFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for f, b := range map[string][]byte{certFile: srv.CertPEM, keyFile: srv.KeyPEM, caFile: ca.CertPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d, err := daemon.New(daemon.Config{Data: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", WSListen: "127.0.0.1:0", ConsoleListen: "127.0.0.1:0",
		TLSCertFile: certFile, TLSKeyFile: keyFile, ClientCAFile: caFile, ClientCertsForClients: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{certFile, keyFile, caFile} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatalf("start with the TLS files gone after New: %v", err)
	}
	defer func() {
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	device := ca.Client(t, "device-1")
	withCert := &tls.Config{RootCAs: srv.Pool, Certificates: []tls.Certificate{device.TLS}, MinVersion: tls.VersionTLS12}
	noCert := &tls.Config{RootCAs: srv.Pool, MinVersion: tls.VersionTLS12}

	conn, err := grpc.NewClient(d.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := hubpb.NewHubClient(conn).Connect(ctx)
	if err == nil {
		err = st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "tls", Device: "d"}}})
	}
	var f *hubpb.ServerFrame
	if err == nil {
		f, err = st.Recv()
	}
	if err != nil || f.GetWelcome() == nil {
		t.Fatalf("gRPC session over TLS: got %v, %v; want a Welcome", f, err)
	}

	dialer := websocket.Dialer{Subprotocols: []string{hub.SubprotocolProto}, HandshakeTimeout: 5 * time.Second, TLSClientConfig: withCert}
	ws, _, err := dialer.DialContext(ctx, "wss://"+d.WSAddr()+"/connect", nil)
	if err != nil {
		t.Fatalf("wss with a client certificate: got %v; want upgraded", err)
	}
	ws.Close()
	dialer.TLSClientConfig = noCert
	if ws, _, err := dialer.DialContext(ctx, "wss://"+d.WSAddr()+"/connect", nil); err == nil {
		ws.Close()
		t.Fatal("wss without a client certificate: upgraded; want refused, as the gRPC listener refuses it")
	}

	tr := &http.Transport{TLSClientConfig: noCert}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + d.ConsoleAddr() + "/")
	if err != nil {
		t.Fatalf("console over TLS: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("console over TLS: got status %d; want 200", res.StatusCode)
	}
}
