package daemon_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/internal/daemon"
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
