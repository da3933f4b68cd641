package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientToolsLinkNoServer: hubctl is a client. It shares limits and
// the token file with the server through hub/hubapi, so it must not link
// the server's storage, bus or metrics (it did, through package hub).
func TestClientToolsLinkNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	// The server's packages, and what they would bring: storage, the bus,
	// metrics. Wire formats (hubpb, auditpb, eventpb) and the small shared
	// packages are fine.
	server := map[string]bool{
		"github.com/sessionledger/sessionledger/hub":         true,
		"github.com/sessionledger/sessionledger/ledger":      true,
		"github.com/sessionledger/sessionledger/projections": true,
		"github.com/sessionledger/sessionledger/audit":       true,
	}
	for _, dep := range strings.Fields(string(out)) {
		if server[dep] || strings.HasPrefix(dep, "go.etcd.io/bbolt") || strings.HasPrefix(dep, "github.com/ThreeDotsLabs/watermill") ||
			strings.HasPrefix(dep, "github.com/prometheus/") || strings.HasPrefix(dep, "github.com/nats-io/") {
			t.Errorf("hubctl links %s", dep)
		}
	}
}
