package main

import (
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testtls"
)

// TestMutualTLSAndRoles: against a hubd that wants client certificates
// for audit calls, auditq --cert/--cert-key gets answers and auditq without one
// is refused; an auditor token may query, and its role is enough.
func TestMutualTLSAndRoles(t *testing.T) {
	srv := testtls.SelfSigned(t)
	ca := testtls.NewCA(t)
	cert := ca.Client(t, "compliance-bot")
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvCA, certFile, keyFile := write("srv.pem", srv.CertPEM), write("client.pem", cert.CertPEM), write("client.key", cert.KeyPEM)
	const auditor = "auditor-token-for-auditq-0123"
	d, err := daemon.New(daemon.Config{Data: t.TempDir(), Listen: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		Creds: credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool,
			ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}),
		Hub: hub.Config{RequireAdminCert: true, Admins: []hubapi.AdminToken{{Name: "comp-1", Token: auditor, Role: hubapi.RoleAuditor}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = d.Shutdown(ctx)
	})
	r := run(t, nil, "--addr", d.Addr(), "--token", auditor, "--ca", srvCA, "--cert", certFile, "--cert-key", keyFile, "stats", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"events"`) {
		t.Fatalf("with a client certificate: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run(t, nil, "--addr", d.Addr(), "--token", auditor, "--ca", srvCA, "stats")
	if r.code == 0 || !strings.Contains(r.stderr, "client certificate") {
		t.Fatalf("without a client certificate: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r = run(t, nil, "--addr", d.Addr(), "--token", auditor, "--cert", certFile, "stats"); r.code != 2 {
		t.Fatalf("--cert without --cert-key: exit %d; want 2", r.code)
	}
	// verify has a --key of its own (the checkpoints' verifier key): the
	// client certificate's key must still reach the connection.
	r = run(t, nil, "--addr", d.Addr(), "--token", auditor, "--ca", srvCA, "--cert", certFile, "--cert-key", keyFile, "verify", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"intact":true`) {
		t.Fatalf("verify with a client certificate: %d %q %q", r.code, r.stdout, r.stderr)
	}
}
