package hubapi_test

import (
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/hub/hubapi"
)

func tokenFile(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// TestMergeAdminTokens: two nodes change the same admin token file at once;
// the merge keeps both changes (an addition on each side, a removal, a
// role change), and refuses to invent a file where both added a token of
// one name.
func TestMergeAdminTokens(t *testing.T) {
	base := tokenFile("# before", "admin admin-token-0123456789 admin", "ops ops-token-0123456789abc operator", "legacy-token-0123456789")
	mine := tokenFile("admin admin-token-0123456789 admin", "ops ops-token-0123456789abc auditor", "legacy-token-0123456789", "new-a token-a-0123456789abcdef operator")
	theirs := tokenFile("admin admin-token-0123456789 admin", "ops ops-token-0123456789abc operator", "new-b token-b-0123456789abcdef auditor")
	got, err := hubapi.MergeAdminTokens(base, mine, theirs)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := hubapi.ParseAdminTokens("merged", got)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, tk := range toks {
		lines = append(lines, tk.Name+" "+tk.Token+" "+string(tk.Role))
	}
	want := []string{
		"admin admin-token-0123456789 admin",
		"ops ops-token-0123456789abc auditor",     // this side's role change
		"new-b token-b-0123456789abcdef auditor",  // theirs' addition
		"new-a token-a-0123456789abcdef operator", // this side's addition
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("merged:\n%s\nwant:\n%s\n(the legacy token, removed by the cluster, stays removed)", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// A removal on this side and none there: removed.
	got, err = hubapi.MergeAdminTokens(base, tokenFile("admin admin-token-0123456789 admin", "legacy-token-0123456789"), theirs)
	if err != nil || strings.Contains(string(got), "ops-token") {
		t.Fatalf("merge of a removal: %q, %v; want ops removed", got, err)
	}
	// Both sides added a token named "x": no valid file holds both.
	if got, err := hubapi.MergeAdminTokens(base,
		append(append([]byte{}, base...), "x token-x1-0123456789abcdef operator\n"...),
		append(append([]byte{}, base...), "x token-x2-0123456789abcdef auditor\n"...)); err == nil {
		t.Fatalf("merge of two tokens named x: %q; want an error", got)
	}
	if _, err := hubapi.MergeAdminTokens(base, []byte("a b c d\n"), theirs); err == nil {
		t.Fatal("merge with an unparsable side: no error; want one")
	}
}

// TestNewAdminTokenFile: the file a cluster's first node shares parses
// as one token named admin with role admin.
func TestNewAdminTokenFile(t *testing.T) {
	toks, err := hubapi.ParseAdminTokens("new", hubapi.NewAdminTokenFile())
	if err != nil || len(toks) != 1 || toks[0].Name != "admin" || toks[0].Role != hubapi.RoleAdmin || len(toks[0].Token) < hubapi.MinAdminTokenLen {
		t.Fatalf("NewAdminTokenFile parses as %+v, %v; want one admin token named admin", toks, err)
	}
}
