package audittest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/projections"
)

// Hub is a real hub serving the Audit service beside its own, the way
// hubd does, over gRPC on 127.0.0.1.
type Hub struct {
	// Addr is the listening address, Token an admin token it accepts and
	// Data the data folder holding admin.token and ledger.db.
	Addr, Token, Data string
	Store             *ledger.Store
	Server            *hub.Server
	Audit             *audit.Server
	Daemon            *daemon.Daemon
}

// HubNode is the node name of the test hub. The fixture's sessions live on
// other nodes, so starting the hub records nothing (it ends only its own
// node's sessions as lost).
const HubNode = "node-audit-test"

// StartHub copies the ledger at fixture into a new data folder and serves it
// with a hub and the Audit service; the server is stopped when the test
// ends. The admin token is created in the folder as hubd does.
func StartHub(tb testing.TB, fixture string) *Hub {
	tb.Helper()
	data := tb.TempDir()
	path := filepath.Join(data, "ledger.db")
	copyFile(tb, fixture, path)
	tokens, _, err := hubapi.LoadOrCreateAdminTokens(data)
	if err != nil {
		tb.Fatal(err)
	}
	token, err := hubapi.FirstAdminToken(filepath.Join(data, hubapi.AdminTokenFile))
	if err != nil {
		tb.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := daemon.New(daemon.Config{Data: data, Listen: "127.0.0.1:0", Logger: quiet,
		Hub:         hub.Config{Node: HubNode, Admins: tokens, ShutdownJitter: 10 * time.Millisecond},
		Projections: projections.Config{SnapshotEvery: 5}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	h := &Hub{Addr: d.Addr(), Token: token, Data: data, Store: d.Store(), Server: d.Hub(), Audit: d.Audit(), Daemon: d}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			tb.Errorf("hub shutdown: %v", err)
		}
	})
	return h
}

// Client returns a Client of the hub's Audit service with its admin token,
// closed when the test ends.
func (h *Hub) Client(tb testing.TB) *audit.Client {
	tb.Helper()
	c, err := audit.NewClient(h.Addr, h.Token)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

// Copy copies the ledger file at from to a new file in a temporary folder
// and returns its path.
func Copy(tb testing.TB, from string) string {
	tb.Helper()
	to := filepath.Join(tb.TempDir(), "ledger.db")
	copyFile(tb, from, to)
	return to
}
