package daemon_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
)

func tokenCtx(t *testing.T, tok string) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// waitToken waits until a read-only admin call with tok on nd gets want
// (OK: the node accepts the token; Unauthenticated: it does not know it).
func waitToken(t *testing.T, nd *node, tok string, want codes.Code) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = nd.admin.ClusterStatus(tokenCtx(t, tok), &hubpb.ClusterStatusRequest{}); status.Code(err) == want {
			return
		}
	}
	t.Fatalf("%s: ClusterStatus with the token: %v; want %v", nd.name, err, want)
}

func adminFile(nd *node) string { return filepath.Join(nd.cfg.Data, hubapi.AdminTokenFile) }

// TestClusterSharesAdminTokens: three nodes that keep their admin tokens in
// their data directories start with one file, the cluster's. A token added
// with its role on one node (hubapi.AddAdminToken, what hubctl admin-token
// add does) is accepted, with that role, by every node; one removed on
// another node is refused everywhere; two added on two nodes at once both
// hold; a node that was down while a token was added takes it when it
// starts, and one whose file was changed while it was down gives its change
// to the others; a node whose file and the cluster's both changed while it
// was down is refused at start.
func TestClusterSharesAdminTokens(t *testing.T) {
	nodes := startClusterWith(t, 3, func(c *daemon.Config) {
		c.Hub.AdminTokens = nil
		c.Cluster.Heartbeat, c.Cluster.LostAfter = 200*time.Millisecond, 5*time.Second
	})
	a, b, c := nodes[0], nodes[1], nodes[2]
	first, err := os.ReadFile(adminFile(a))
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[1:] {
		if got, err := os.ReadFile(adminFile(nd)); err != nil || !bytes.Equal(got, first) {
			t.Fatalf("%s's admin token file %q, %v; want node a's %q", nd.name, got, err, first)
		}
	}
	admin, err := hubapi.FirstAdminToken(adminFile(c))
	if err != nil {
		t.Fatal(err)
	}
	waitToken(t, a, admin, codes.OK)

	// Added on one node, with its role, on all.
	ops, err := hubapi.AddAdminToken(a.cfg.Data, "ops-new", hubapi.RoleOperator)
	if err != nil {
		t.Fatal(err)
	}
	aud, err := hubapi.AddAdminToken(b.cfg.Data, "audit-new", hubapi.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitToken(t, nd, ops.Token, codes.OK)
		waitToken(t, nd, aud.Token, codes.OK)
	}
	if _, err := c.admin.Notify(tokenCtx(t, ops.Token), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t"}); err != nil {
		t.Fatalf("node a's operator token on node c, Notify: %v", err)
	}
	if _, err := c.admin.Kick(tokenCtx(t, aud.Token), &hubpb.KickRequest{User: "u", Reason: "r"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node b's auditor token on node c, Kick: %v; want PermissionDenied", err)
	}

	// Removed on another node, refused on all.
	if err := hubapi.RemoveAdminToken(c.cfg.Data, "ops-new"); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitToken(t, nd, ops.Token, codes.Unauthenticated)
	}

	// Two nodes at once: both changes hold.
	var wg sync.WaitGroup
	twins, errs := make([]hubapi.AdminToken, 2), make([]error, 2)
	for i, nd := range []*node{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			twins[i], errs[i] = hubapi.AddAdminToken(nd.cfg.Data, "twin-"+nd.name, hubapi.RoleAuditor)
		}()
	}
	wg.Wait()
	for i, tk := range twins {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		for _, nd := range nodes {
			waitToken(t, nd, tk.Token, codes.OK)
		}
	}

	// Added while a node was down: it takes it at start.
	b.stop(t)
	late, err := hubapi.AddAdminToken(a.cfg.Data, "late", hubapi.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	waitToken(t, c, late.Token, codes.OK)
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	b.dial(t)
	waitToken(t, b, late.Token, codes.OK)

	// Changed on a node while it was down: the others take it.
	c.stop(t)
	offline, err := hubapi.AddAdminToken(c.cfg.Data, "offline", hubapi.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.start(); err != nil {
		t.Fatal(err)
	}
	c.dial(t)
	for _, nd := range nodes {
		waitToken(t, nd, offline.Token, codes.OK)
	}

	// Both changed while it was down: refused, with what to do.
	b.stop(t)
	if _, err := hubapi.AddAdminToken(a.cfg.Data, "both-1", hubapi.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	waitToken(t, c, late.Token, codes.OK)
	if _, err := hubapi.AddAdminToken(b.cfg.Data, "both-2", hubapi.RoleAuditor); err != nil {
		t.Fatal(err)
	}
	// Wait until node c has the cluster's new copy, so the cluster's copy
	// certainly changed before node b starts.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if got, _ := os.ReadFile(adminFile(c)); strings.Contains(string(got), "both-1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node c did not take the token added on node a")
		}
	}
	if err := b.start(); err == nil || !strings.Contains(err.Error(), "both changed") {
		t.Fatalf("start of a node whose admin token file and the cluster's both changed: %v; want refused", err)
	}
	if err := os.Remove(adminFile(b)); err != nil {
		t.Fatal(err)
	}
	if err := b.start(); err != nil {
		t.Fatal(err)
	}
	b.dial(t)
	if got, err := os.ReadFile(adminFile(b)); err != nil || !strings.Contains(string(got), "both-1") {
		t.Fatalf("node b's file after it took the cluster's: %q, %v; want the token added on node a", got, err)
	}
}
