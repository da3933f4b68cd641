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
	for _, dep := range strings.Fields(string(out)) {
		for _, server := range []string{"go.etcd.io/bbolt", "github.com/ThreeDotsLabs/watermill", "github.com/prometheus/",
			"github.com/sessionledger/sessionledger/hub", "github.com/sessionledger/sessionledger/ledger"} {
			if dep == server || strings.HasPrefix(dep, server+"/") || (strings.HasSuffix(server, "/") && strings.HasPrefix(dep, server)) {
				if dep == "github.com/sessionledger/sessionledger/hub/hubapi" || dep == "github.com/sessionledger/sessionledger/hub/hubpb" ||
					dep == "github.com/sessionledger/sessionledger/hub/client" {
					continue
				}
				t.Errorf("hubctl links %s", dep)
			}
		}
	}
}
