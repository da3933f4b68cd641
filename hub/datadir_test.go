package hub_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
)

// TestResumeKeyAppearsWhole: the resume key is created as a complete file
// of mode 0600, with no temporary file left behind; a second load reads
// the same key, and a damaged one is reported.
func TestResumeKeyAppearsWhole(t *testing.T) {
	data := t.TempDir()
	key1, err := hub.LoadOrCreateResumeKey(data)
	if err != nil {
		t.Fatal(err)
	}
	key2, err := hub.LoadOrCreateResumeKey(data)
	if err != nil || !bytes.Equal(key1, key2) || len(key1) != 32 {
		t.Fatalf("second read of the resume key: %x, %v; want %x", key2, err, key1)
	}
	if info, err := os.Stat(filepath.Join(data, hub.ResumeKeyFile)); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v %v; want mode 0600", hub.ResumeKeyFile, info, err)
	}
	entries, _ := os.ReadDir(data)
	if len(entries) != 1 {
		t.Fatalf("data directory holds %v; want only %s", entries, hub.ResumeKeyFile)
	}
	if err := os.WriteFile(filepath.Join(data, hub.ResumeKeyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := hub.LoadOrCreateResumeKey(data); err == nil || !strings.Contains(err.Error(), "5 bytes, want 32") {
		t.Fatalf("a damaged resume key: %v; want it reported", err)
	}
}

// TestSecretFilesMustBeOwnerOnly: every secret file hubd reads is refused
// when users other than its owner may read or write it, as admin.token
// already was: the resume key and the JWT secret were read whatever their
// mode.
func TestSecretFilesMustBeOwnerOnly(t *testing.T) {
	data := t.TempDir()
	if _, err := hub.LoadOrCreateResumeKey(data); err != nil {
		t.Fatal(err)
	}
	if _, _, err := hubapi.LoadOrCreateAdminTokens(data); err != nil {
		t.Fatal(err)
	}
	jwt := filepath.Join(data, "jwt.key")
	if err := os.WriteFile(jwt, []byte("0123456789abcdef0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := hubapi.ReadSecretFile(jwt); err != nil || len(b) != 32 {
		t.Fatalf("ReadSecretFile of a 0600 file: %d bytes, %v", len(b), err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620, 0o666} {
		for _, f := range []string{hub.ResumeKeyFile, hubapi.AdminTokenFile, "jwt.key"} {
			if err := os.Chmod(filepath.Join(data, f), mode); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := hub.LoadOrCreateResumeKey(data); !errors.Is(err, hubapi.ErrSecretFileMode) {
			t.Errorf("resume key of mode %04o: %v; want ErrSecretFileMode", mode, err)
		}
		if _, _, err := hubapi.LoadOrCreateAdminTokens(data); !errors.Is(err, hubapi.ErrSecretFileMode) {
			t.Errorf("admin tokens of mode %04o: %v; want ErrSecretFileMode", mode, err)
		}
		if _, err := hubapi.ReadSecretFile(jwt); !errors.Is(err, hubapi.ErrSecretFileMode) || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("JWT secret of mode %04o: %v; want ErrSecretFileMode saying what to do", mode, err)
		}
	}
}
