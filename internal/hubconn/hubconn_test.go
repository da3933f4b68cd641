package hubconn_test

import (
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/internal/hubconn"
	"github.com/sessionledger/sessionledger/internal/testtls"
)

// write puts b in a new file named name and returns its path.
func write(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTLSConfig: plaintext unless a flag asks for TLS; a CA and a client
// certificate end up in the configuration; every mistake names its flag,
// the key's under the name the tool gives it.
func TestTLSConfig(t *testing.T) {
	srv := testtls.SelfSigned(t)
	client := testtls.NewCA(t).Client(t, "bot")
	ca := write(t, "ca.pem", srv.CertPEM)
	cert, key := write(t, "client.pem", client.CertPEM), write(t, "client.key", client.KeyPEM)
	notPEM := write(t, "notes.txt", []byte("not a certificate\n"))
	missing := filepath.Join(t.TempDir(), "none.pem")

	cfg, err := hubconn.TLS{}.Config()
	if cfg != nil || err != nil {
		t.Errorf("no flags: got %v, %v; want nil (plaintext)", cfg, err)
	}
	creds, err := hubconn.TLS{}.Credentials()
	if err != nil || creds.Info().SecurityProtocol != "insecure" {
		t.Errorf("no flags: credentials %v, %v; want insecure", creds, err)
	}
	cfg, err = hubconn.TLS{On: true}.Config()
	if err != nil || cfg == nil || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("--tls: got %+v, %v; want TLS 1.2+ with the system roots", cfg, err)
	}
	cfg, err = hubconn.TLS{CAFile: ca, CertFile: cert, KeyFile: key}.Config()
	if err != nil || cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
		t.Errorf("--ca --cert --key: got %+v, %v; want the CA and the certificate (TLS implied)", cfg, err)
	}
	creds, err = hubconn.TLS{CAFile: ca}.Credentials()
	if err != nil || creds.Info().SecurityProtocol != "tls" {
		t.Errorf("--ca: credentials %v, %v; want tls", creds, err)
	}

	for _, c := range []struct {
		name string
		t    hubconn.TLS
		want string
	}{
		{"cert without key", hubconn.TLS{CertFile: cert}, "--cert and --key go together"},
		{"key without cert", hubconn.TLS{On: true, KeyFile: key, KeyFlag: "--cert-key"}, "--cert and --cert-key go together"},
		{"key not the cert's", hubconn.TLS{CertFile: cert, KeyFile: ca, KeyFlag: "--cert-key"}, "--cert/--cert-key: "},
		{"missing CA", hubconn.TLS{On: true, CAFile: missing}, "--ca: open " + missing},
		{"CA not PEM", hubconn.TLS{CAFile: notPEM}, "--ca " + notPEM + ": no PEM certificate in it"},
	} {
		cfg, err := c.t.Config()
		if cfg != nil || err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%s: got %v, %v; want an error starting %q", c.name, cfg, err, c.want)
		}
		if _, err := c.t.Credentials(); err == nil {
			t.Errorf("%s: Credentials succeeded; want Config's error", c.name)
		}
	}
}

// TestAdminToken: the first token given wins, then the data directory's
// file; a missing file is named with what else to give.
func TestAdminToken(t *testing.T) {
	data := t.TempDir()
	const fileTok = "file-token-0123456789abcdef"
	if err := os.WriteFile(filepath.Join(data, "admin.token"), []byte("# made by hubd\nadmin "+fileTok+" admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		given []string
		want  string
	}{
		{[]string{"flag-token", "env-token"}, "flag-token"},
		{[]string{"", "env-token"}, "env-token"},
		{[]string{"", ""}, fileTok},
		{nil, fileTok},
	} {
		if got, err := hubconn.AdminToken(data, c.given...); got != c.want || err != nil {
			t.Errorf("AdminToken(%q) = %q, %v; want %q", c.given, got, err, c.want)
		}
	}

	empty := t.TempDir()
	_, err := hubconn.AdminToken(empty, "")
	want := "no admin token: " + filepath.Join(empty, "admin.token") + " does not exist (is --data hubd's data directory? or pass --token or HUBD_ADMIN_TOKEN)"
	if err == nil || err.Error() != want {
		t.Errorf("no token file: got %v; want %q", err, want)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "admin.token"), []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hubconn.AdminToken(bad); err == nil || !strings.HasPrefix(err.Error(), "admin token: ") || !strings.Contains(err.Error(), "holds no token") {
		t.Errorf("a file without a token: got %v; want \"admin token: ... holds no token\"", err)
	}
}

// TestLinksNoServer: both client tools import this package, so it must not
// bring them the server's storage, bus or metrics.
func TestLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch {
		case dep == "github.com/sessionledger/sessionledger/hub", dep == "github.com/sessionledger/sessionledger/ledger",
			dep == "github.com/sessionledger/sessionledger/projections", dep == "github.com/sessionledger/sessionledger/audit",
			strings.HasPrefix(dep, "go.etcd.io/bbolt"), strings.HasPrefix(dep, "github.com/ThreeDotsLabs/watermill"),
			strings.HasPrefix(dep, "github.com/prometheus/"), strings.HasPrefix(dep, "github.com/nats-io/"):
			t.Errorf("hubconn links %s", dep)
		}
	}
}
