package hub_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/daemon"
	"github.com/sessionledger/sessionledger/internal/testtls"
	"github.com/sessionledger/sessionledger/ledger"
)

const (
	auditorToken  = "auditor-token-0123456789"
	operatorToken = "operator-token-0123456789"
)

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// backup runs Admin.Backup and returns the bytes and the seq it holds.
func backup(ctx context.Context, conn *grpc.ClientConn) ([]byte, uint64, error) {
	st, err := hubpb.NewAdminClient(conn).Backup(ctx, &hubpb.BackupRequest{})
	if err != nil {
		return nil, 0, err
	}
	var b bytes.Buffer
	var last *hubpb.BackupInfo
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, 0, err
		}
		b.Write(c.GetData())
		if i := c.GetInfo(); i != nil {
			last = i
		}
	}
	// The closing BackupInfo vouches for what was sent.
	if sum := sha256.Sum256(b.Bytes()); last == nil || last.GetSize() != uint64(b.Len()) || !bytes.Equal(last.GetSha256(), sum[:]) {
		return nil, 0, fmt.Errorf("backup: closing info %v does not match the %d bytes received", last, b.Len())
	}
	return b.Bytes(), last.GetHeadSeq(), nil
}

// TestWhoAmIFollowsRole: WhoAmI tells each token its role and exactly the
// admin methods that role may call (the console shows only those actions):
// an auditor the Audit service and the read-only Admin calls, an operator
// those and the calls that act, an admin every Admin and Audit method.
// What WhoAmI lists, the token may call; an auditor calling Kick anyway is
// refused.
func TestWhoAmIFollowsRole(t *testing.T) {
	e := newEnv(t, hub.Config{Admins: []hubapi.AdminToken{
		{Name: "ops-alice", Token: adminToken, Role: hubapi.RoleAdmin},
		{Name: "comp-carl", Token: auditorToken, Role: hubapi.RoleAuditor},
		{Name: "ops-olga", Token: operatorToken, Role: hubapi.RoleOperator},
	}, RejectWindow: time.Hour})
	ctx := ctxT(t)
	const admin = "/sessionledger.hub.v1.Admin/"
	var audit, all []string
	for _, d := range []grpc.ServiceDesc{auditpb.Audit_ServiceDesc, hubpb.Admin_ServiceDesc} {
		for _, m := range d.Methods {
			all = append(all, "/"+d.ServiceName+"/"+m.MethodName)
		}
		for _, m := range d.Streams {
			all = append(all, "/"+d.ServiceName+"/"+m.StreamName)
		}
	}
	for _, m := range all {
		if strings.HasPrefix(m, "/sessionledger.audit.v1.Audit/") {
			audit = append(audit, m)
		}
	}
	auditor := append(slices.Clone(audit), admin+"ListSessions", admin+"GetSession", admin+"ClusterStatus", admin+"WhoAmI", admin+"LedgerStatus")
	operator := append(slices.Clone(auditor), admin+"Kick", admin+"Ban", admin+"Unban", admin+"Notify", admin+"Revoke", admin+"Drain")
	for _, tc := range []struct {
		tok, actor, role string
		want             []string
	}{
		{auditorToken, "comp-carl", "auditor", auditor},
		{operatorToken, "ops-olga", "operator", operator},
		{adminToken, "ops-alice", "admin", all},
	} {
		me, err := e.admin.WhoAmI(bearer(ctx, tc.tok), &hubpb.WhoAmIRequest{})
		if err != nil {
			t.Fatalf("%s WhoAmI: %v", tc.role, err)
		}
		slices.Sort(tc.want)
		if me.GetActor() != tc.actor || me.GetRole() != tc.role || !slices.Equal(me.GetMethods(), tc.want) {
			t.Errorf("%s WhoAmI: got %s %s %q; want %s %s %q", tc.role, me.GetActor(), me.GetRole(), me.GetMethods(), tc.actor, tc.role, tc.want)
		}
		if _, err := e.admin.LedgerStatus(bearer(ctx, tc.tok), &hubpb.LedgerStatusRequest{}); err != nil {
			t.Errorf("%s LedgerStatus: %v", tc.role, err)
		}
	}
	if _, err := e.admin.Kick(bearer(ctx, auditorToken), &hubpb.KickRequest{User: "x", Reason: "x"}); codeOf(err) != codes.PermissionDenied {
		t.Errorf("auditor Kick: %v; want PermissionDenied", err)
	}
}

// TestRoles: an auditor reads (sessions, the cluster's status, the Audit
// service) and may not act; an operator acts and may not back up; an admin
// may. Each refusal is PermissionDenied, counted, and recorded with the
// token's name.
func TestRoles(t *testing.T) {
	e := newEnv(t, hub.Config{Admins: []hubapi.AdminToken{
		{Name: "ops-alice", Token: adminToken, Role: hubapi.RoleAdmin},
		{Name: "comp-carl", Token: auditorToken, Role: hubapi.RoleAuditor},
		{Name: "ops-olga", Token: operatorToken, Role: hubapi.RoleOperator},
	}, RejectWindow: time.Hour})
	c := e.mustDial("rob", "d")
	ctx := ctxT(t)
	audit := auditpb.NewAuditClient(e.conn)
	as := func(tok string) context.Context { return bearer(ctx, tok) }

	// Auditor.
	if _, err := e.admin.ListSessions(as(auditorToken), &hubpb.ListSessionsRequest{}); err != nil {
		t.Fatalf("auditor ListSessions: %v", err)
	}
	if _, err := audit.Stats(as(auditorToken), &auditpb.Filter{}); err != nil {
		t.Fatalf("auditor Audit.Stats: %v", err)
	}
	if st, err := e.admin.ClusterStatus(as(auditorToken), &hubpb.ClusterStatusRequest{}); err != nil || len(st.GetNodes()) != 1 {
		t.Fatalf("auditor ClusterStatus: %v, %v; want this node", st, err)
	}
	head := e.store.Head().Seq
	for name, call := range map[string]func() error{
		"Kick": func() error {
			_, err := e.admin.Kick(as(auditorToken), &hubpb.KickRequest{User: "rob", Reason: "x"})
			return err
		},
		"Ban": func() error {
			_, err := e.admin.Ban(as(auditorToken), &hubpb.BanRequest{User: "rob", Reason: "x"})
			return err
		},
		"Revoke": func() error {
			_, err := e.admin.Revoke(as(auditorToken), &hubpb.RevokeRequest{User: "rob", Reason: "x"})
			return err
		},
		"Drain": func() error {
			_, err := e.admin.Drain(as(auditorToken), &hubpb.DrainRequest{Reason: "x"})
			return err
		},
		"Notify": func() error {
			_, err := e.admin.Notify(as(auditorToken), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t"})
			return err
		},
	} {
		if err := call(); codeOf(err) != codes.PermissionDenied {
			t.Errorf("auditor %s: %v; want PermissionDenied", name, err)
		}
	}
	// Operator.
	if _, err := e.admin.Notify(as(operatorToken), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t"}); err != nil {
		t.Fatalf("operator Notify: %v", err)
	}
	rep, err := e.admin.Kick(as(operatorToken), &hubpb.KickRequest{User: "rob", Reason: "operator kick"})
	if err != nil {
		t.Fatalf("operator Kick: %v", err)
	}
	endedWith(t, c, hubpb.DisconnectCode_DISCONNECT_CODE_KICKED, rep.GetEventId())
	if kick := e.events(rep.GetSeq())[0]; kick.Event.GetActor() != "ops-olga" {
		t.Fatalf("kick recorded by %q; want the operator token's name", kick.Event.GetActor())
	}
	if _, _, err := backup(as(operatorToken), e.conn); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("operator Backup: %v; want PermissionDenied", err)
	}
	// The refusals are in the ledger: who, which call, what role.
	var refused []string
	for _, r := range e.events(head) {
		if a := r.Event.GetAdminCallRefused(); a != nil {
			refused = append(refused, r.Event.GetActor()+" "+a.GetMethod()+" "+a.GetRole()+"<"+a.GetNeeds())
		}
	}
	want := map[string]bool{
		"comp-carl /sessionledger.hub.v1.Admin/Kick auditor<operator":   true,
		"comp-carl /sessionledger.hub.v1.Admin/Ban auditor<operator":    true,
		"comp-carl /sessionledger.hub.v1.Admin/Revoke auditor<operator": true,
		"comp-carl /sessionledger.hub.v1.Admin/Drain auditor<operator":  true,
		"comp-carl /sessionledger.hub.v1.Admin/Notify auditor<operator": true,
		"ops-olga /sessionledger.hub.v1.Admin/Backup operator<admin":    true,
	}
	if len(refused) != len(want) {
		t.Fatalf("recorded refusals %q; want %d", refused, len(want))
	}
	for _, r := range refused {
		if !want[r] {
			t.Fatalf("unexpected refusal %q (all: %q)", r, refused)
		}
	}
	if got := e.metric(`sessionledger_admin_calls_refused_total{method="Admin/Kick",role="auditor"}`); got == "" || got[len(got)-2:] != " 1" {
		t.Fatalf("metric %q; want one refused Kick", got)
	}
	// Admin: a backup that is the ledger, readable by bbolt.
	data, seq, err := backup(as(adminToken), e.conn)
	if err != nil || seq == 0 || len(data) == 0 {
		t.Fatalf("admin Backup: %d bytes, seq %d, %v", len(data), seq, err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer s.Close()
	if s.Head().Seq != seq {
		t.Fatalf("backup head %d; want %d", s.Head().Seq, seq)
	}
}

// TestRefusedAdminCallsAggregated: a token that keeps calling outside its
// role writes one event at once and one with the count at the window's
// end, not one per call.
func TestRefusedAdminCallsAggregated(t *testing.T) {
	e := newEnv(t, hub.Config{Admins: []hubapi.AdminToken{
		{Name: "ops-alice", Token: adminToken, Role: hubapi.RoleAdmin},
		{Name: "comp-carl", Token: auditorToken, Role: hubapi.RoleAuditor},
	}, RejectWindow: time.Second})
	head := e.store.Head().Seq
	for range 20 {
		if _, err := e.admin.Ban(bearer(ctxT(t), auditorToken), &hubpb.BanRequest{User: "x", Reason: "x"}); codeOf(err) != codes.PermissionDenied {
			t.Fatalf("auditor Ban: %v", err)
		}
	}
	// Only the refusals are this test's to count. Over the seconds it
	// waits, a client of another test process that lost its server and
	// dials its address again may reach this hub, if it was given that
	// port: its connect is recorded here too.
	total := func() (calls uint32, events int) {
		for _, r := range e.events(head + 1) {
			a := r.Event.GetAdminCallRefused()
			if a == nil {
				continue
			}
			if r.Event.GetActor() != "comp-carl" || a.GetMethod() != "/sessionledger.hub.v1.Admin/Ban" {
				t.Fatalf("got refusal %v; want only comp-carl's Ban", r.Event)
			}
			calls += a.GetCount()
			events++
		}
		return calls, events
	}
	e.waitEvent(head+1, "every refusal counted", func(*ledger.Record) bool { n, _ := total(); return n == 20 })
	// At most the first of each window at once, the rest with a count at
	// its end: a few events, however slow the machine.
	if calls, events := total(); calls != 20 || events > 6 {
		t.Fatalf("%d events standing for %d calls; want a few for 20", events, calls)
	}
}

// TestAdminTokensReload: a token added to the admin token file works
// without a restart (hubd re-reads the file when it changes, or on
// Reload), a removed one stops working, and existing one-field and
// two-field lines keep working as admins.
func TestAdminTokensReload(t *testing.T) {
	e := &env{t: t, dir: t.TempDir(), cfg: hub.Config{}}
	legacy := "legacy-admin-token-0123456789"
	if err := os.WriteFile(filepath.Join(e.dir, hubapi.AdminTokenFile), []byte("# before roles\n"+legacy+"\nops-old named-admin-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.cfg.Admins = nil
	e.daemonCfg = func(dc *daemon.Config) {
		dc.Hub.AdminTokens, dc.Hub.Admins, dc.WatchInterval = nil, nil, 20*time.Millisecond
	}
	e = newEnvFrom(e)
	if _, _, err := backup(bearer(ctxT(t), legacy), e.conn); err != nil {
		t.Fatalf("a one-field token line is an admin: %v", err)
	}
	aud, err := hubapi.AddAdminToken(e.dir, "comp-dana", hubapi.RoleAuditor)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.admin.ListSessions(bearer(ctxT(t), aud.Token), &hubpb.ListSessionsRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new auditor token refused after the file changed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := e.admin.Kick(bearer(ctxT(t), aud.Token), &hubpb.KickRequest{User: "x", Reason: "x"}); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("new auditor Kick: %v; want PermissionDenied", err)
	}
	if err := hubapi.RemoveAdminToken(e.dir, "comp-dana"); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.ListSessions(bearer(ctxT(t), aud.Token), &hubpb.ListSessionsRequest{}); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("removed token: %v; want Unauthenticated", err)
	}
	// A file that does not parse changes nothing.
	if err := os.WriteFile(filepath.Join(e.dir, hubapi.AdminTokenFile), []byte("a b c d\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := e.d.Reload(); err == nil {
		t.Fatal("reload of a broken token file succeeded")
	}
	if _, err := e.admin.ListSessions(bearer(ctxT(t), legacy), &hubpb.ListSessionsRequest{}); err != nil {
		t.Fatalf("after a broken file: %v", err)
	}
}

// TestMutualTLS: with client certificates required for admin calls, a
// caller without one is refused whatever its token; with one it is let
// in, and a token line without a name records the certificate's subject
// as the actor. Client streams need no certificate unless asked.
func TestMutualTLS(t *testing.T) {
	srv := testtls.SelfSigned(t)
	ca := testtls.NewCA(t)
	serverCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12})
	noCert := credentials.NewTLS(&tls.Config{RootCAs: srv.Pool, MinVersion: tls.VersionTLS12})
	e := newEnvWith(t, hub.Config{RequireAdminCert: true, Admins: []hubapi.AdminToken{{Token: adminToken, Role: hubapi.RoleAdmin}}}, serverCreds, noCert)
	c := e.mustDial("tls-user", "d") // a client stream needs no certificate
	if _, err := e.admin.ListSessions(adminCtx(ctxT(t)), &hubpb.ListSessionsRequest{}); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("admin call without a client certificate: %v; want Unauthenticated", err)
	}
	cert := ca.Client(t, "ops-cert-carla")
	withCert := credentials.NewTLS(&tls.Config{RootCAs: srv.Pool, Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(withCert))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rep, err := hubpb.NewAdminClient(conn).Kick(adminCtx(ctxT(t)), &hubpb.KickRequest{SessionId: c.welcome.GetSessionId(), Reason: "mtls"})
	if err != nil {
		t.Fatalf("admin call with a client certificate: %v", err)
	}
	if kick := e.events(rep.GetSeq())[0]; kick.Event.GetActor() != "ops-cert-carla" {
		t.Fatalf("actor %q; want the certificate's subject", kick.Event.GetActor())
	}
	// A certificate alone is not enough: the token gives the role.
	if _, err := hubpb.NewAdminClient(conn).ListSessions(ctxT(t), &hubpb.ListSessionsRequest{}); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("certificate without a token: %v; want Unauthenticated", err)
	}
}

// TestMutualTLSForClients: with RequireClientCert a client stream without
// a certificate is refused before Hello, and nothing is recorded.
func TestMutualTLSForClients(t *testing.T) {
	srv := testtls.SelfSigned(t)
	ca := testtls.NewCA(t)
	serverCreds := credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool,
		ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12})
	noCert := credentials.NewTLS(&tls.Config{RootCAs: srv.Pool, MinVersion: tls.VersionTLS12})
	e := newEnvWith(t, hub.Config{RequireClientCert: true}, serverCreds, noCert)
	if _, err := e.dial("nocert", "d"); codeOf(err) != codes.Unauthenticated {
		t.Fatalf("client without a certificate: %v; want Unauthenticated", err)
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("%d events recorded", h)
	}
	cert := ca.Client(t, "device-1")
	e.clientCreds = credentials.NewTLS(&tls.Config{RootCAs: srv.Pool, Certificates: []tls.Certificate{cert.TLS}, MinVersion: tls.VersionTLS12})
	if _, err := e.dial("withcert", "d"); err != nil {
		t.Fatalf("client with a certificate: %v", err)
	}
}
