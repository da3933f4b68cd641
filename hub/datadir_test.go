package hub_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/hub"
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
