package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"

	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testtls"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func verifiedHead(t *testing.T, r result) uint64 {
	t.Helper()
	var v struct {
		Intact  bool   `json:"intact"`
		HeadSeq uint64 `json:"head_seq"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &v) != nil || !v.Intact {
		t.Fatalf("verify: exit %d, %q, %q; want an intact chain", r.code, r.stdout, r.stderr)
	}
	return v.HeadSeq
}

// TestSourceFollowsTheDataDirectory: with neither --addr nor --db, auditq
// --data DIR reads the hubd running on DIR (at the address it wrote
// there), not whichever hubd answers on the default address; with no hubd
// on DIR it reads DIR's ledger itself.
func TestSourceFollowsTheDataDirectory(t *testing.T) {
	mine, other := audittest.StartHub(t, fixture), audittest.StartHub(t, fixture)
	// Make the two logs tell apart: one more record in mine.
	if _, err := mine.Store.Append(context.Background(), &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: "nobody", Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	want := mine.Store.Head().Seq
	if other.Store.Head().Seq == want {
		t.Fatal("the two hubs' logs have the same head")
	}
	if _, err := os.Stat(filepath.Join(mine.Data, hubapi.AddrFile)); err != nil {
		t.Fatalf("hubd wrote no address file: %v", err)
	}
	r := run(t, map[string]string{"localAddr": other.Addr}, "--data", mine.Data, "verify", "--json")
	if got := verifiedHead(t, r); got != want {
		t.Fatalf("auditq --data read a log with head %d; want %d, the log of the hubd on that directory (not the one at the default address)", got, want)
	}

	// Stopped: the ledger itself, and the address file is gone.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := mine.Daemon.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mine.Data, hubapi.AddrFile)); !os.IsNotExist(err) {
		t.Errorf("address file left after a clean stop: %v", err)
	}
	r = run(t, map[string]string{"localAddr": other.Addr}, "--data", mine.Data, "verify", "--json")
	if got := verifiedHead(t, r); got < want {
		t.Fatalf("auditq --data on a stopped hubd's directory read head %d; want its ledger, %d or more", got, want)
	}
}

// TestTLS: auditq reaches a hubd that serves TLS with --tls and --ca, as
// hubctl does; without them it fails with an error that says so.
func TestTLS(t *testing.T) {
	cert := testtls.SelfSigned(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, cert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := daemon.New(daemon.Config{Data: filepath.Join(dir, "data"), Listen: "127.0.0.1:0", Metrics: "off",
		Creds:  credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12}),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Hub:    hub.Config{AdminTokens: map[string]string{"tls-token-0123456789abcdef": "ops"}, ShutdownJitter: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Shutdown(context.Background()) })

	r := run(t, nil, "--addr", d.Addr(), "--token", "tls-token-0123456789abcdef", "--tls", "--ca", ca, "verify", "--json")
	verifiedHead(t, r)
	r = run(t, map[string]string{"connectTimeout": "500ms"}, "--addr", d.Addr(), "--token", "tls-token-0123456789abcdef", "verify")
	if r.code == 0 || !strings.Contains(r.stderr, d.Addr()) {
		t.Fatalf("without --tls: exit %d, %q; want a failure naming the hub", r.code, r.stderr)
	}
	t.Logf("without --tls: %s", r.stderr)
}

// TestFlagsMeanOneThing: no auditq command has a flag of its own whose
// name a global flag also has (it would hide the global one silently, as
// hubctl notify's --data hid the data directory).
func TestFlagsMeanOneThing(t *testing.T) {
	root := newApp(io.Discard, io.Discard, func(string) string { return "" }).rootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		global := map[string]bool{}
		for p := c.Parent(); p != nil; p = p.Parent() {
			p.PersistentFlags().VisitAll(func(f *pflag.Flag) { global[f.Name] = true })
		}
		c.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
			if global[f.Name] {
				t.Errorf("%s: --%s is both a flag of the command and a global flag", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// TestVersion: --version prints the build.
func TestVersion(t *testing.T) {
	r := run(t, nil, "--version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "auditq ") {
		t.Fatalf("--version: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}

// TestProgressOnATerminal: export draws a progress line on stderr when it
// is a terminal and the output is not, and clears it; with stderr not a
// terminal it draws nothing.
func TestProgressOnATerminal(t *testing.T) {
	for _, tty := range []bool{true, false} {
		var out, errb strings.Builder
		a := newApp(&out, &errb, func(string) string { return "" })
		a.errTTY, a.outTTY = tty, false
		a.localAddr = closedAddr(t)
		if code := a.run(context.Background(), []string{"--db", fixture, "export"}); code != 0 {
			t.Fatalf("export: exit %d: %s", code, errb.String())
		}
		drawn := strings.Contains(errb.String(), "exporting… seq 1 of 21 (5%)") && strings.HasSuffix(errb.String(), "\r\033[K")
		if drawn != tty {
			t.Errorf("stderr a terminal %v: progress %q; want it drawn and cleared only on a terminal", tty, errb.String())
		}
		if strings.Count(out.String(), "\n") != 21 {
			t.Errorf("export wrote %d lines; want 21", strings.Count(out.String(), "\n"))
		}
	}
}
