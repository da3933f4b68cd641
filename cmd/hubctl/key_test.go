package main

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/checkpoint"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
	"github.com/sessionledger/sessionledger/ledger/signkey"
)

// TestKey prints the verifier key from the data directory, and from the
// hub's Audit API when the data directory has no key.
func TestKey(t *testing.T) {
	data := t.TempDir()
	if _, _, err := signkey.LoadOrCreateKey(data, "example.com/log"); err != nil {
		t.Fatal(err)
	}
	want, err := signkey.VerifierKey(filepath.Join(data, signkey.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"key", "--data", data, "--addr", "127.0.0.1:1"}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != want {
		t.Fatalf("hubctl key --data: exit %d %q %s; want %s", code, out.String(), errb.String(), want)
	}

	// The hub's Audit API, with a checkpoint stored in its ledger.
	st, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), &ledger.Options{LogID: "example.com/log"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, _, err := signkey.LoadOrCreateKey(data, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := checkpoint.New(checkpoint.Config{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(t.Context(), ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, "u", "s")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignNow(t.Context()); err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	audit.RegisterServer(g, audit.NewServer(st, audit.WithVerifierKey(want)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	defer g.Stop()
	out.Reset()
	errb.Reset()
	if code := run([]string{"key", "--data", t.TempDir(), "--addr", l.Addr().String(), "--token", "x"}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != want {
		t.Fatalf("hubctl key --addr: exit %d %q %s; want %s", code, out.String(), errb.String(), want)
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"key", "--data", t.TempDir(), "--addr", "127.0.0.1:1", "--token", "x", "--timeout", "2s"}, &out, &errb); code != exitFailure || !strings.Contains(errb.String(), "checkpoint.key") {
		t.Errorf("hubctl key with neither: exit %d %q; want 1 naming the key file", code, errb.String())
	}
}
