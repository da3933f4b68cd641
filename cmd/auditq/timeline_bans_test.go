package main

import (
	"strings"
	"testing"

	"github.com/sessionledger/sessionledger/audit/audittest"
)

// twoBans writes audittest.BanDamage (uma's second ban, at seq 6,
// changes nothing) and cuts the record at damaged short, so it no longer
// decodes.
func twoBans(t *testing.T, damaged uint64) string {
	t.Helper()
	path := audittest.BanDamage(t)
	audittest.CutShort(t, path, damaged)
	return path
}

// TestTimelineBanPastDamage: whether a ban changed nothing is read from the
// user's earlier bans. A damaged record of another user changes nothing of
// that (auditq once rebuilt the whole state at the ban, failed on the
// damage, and printed the ban as if it took effect, exit 0); a damaged
// record of the user is skipped and named, exit 3, and the ban is still
// told right.
func TestTimelineBanPastDamage(t *testing.T) {
	const kept = "changed nothing: the ban in force (seq 2) ends later and was kept, with no expiry"
	for _, args := range [][]string{{"timeline", "--user", "uma"}, {"timeline", "--session", "s-uma-1"}, {"timeline", "--user", "uma", "--since", "2026-03-01T10:05:00Z"}} {
		r := run(t, nil, append([]string{"--db", twoBans(t, 4)}, args...)...)
		if r.code != 0 || !strings.Contains(r.stdout, kept) {
			t.Errorf("vic's record damaged: auditq %s: exit %d\n%s%s\nwant exit 0 and %q", strings.Join(args, " "), r.code, r.stdout, r.stderr, kept)
		}
		r = run(t, nil, append([]string{"--db", twoBans(t, 5)}, args...)...)
		wantFail(t, r, exitIntegrity, "corrupt record at seq 5 skipped", "run verify")
		if !strings.Contains(r.stdout, kept) {
			t.Errorf("uma's record damaged: auditq %s printed\n%s\nwant %q", strings.Join(args, " "), r.stdout, kept)
		}
	}
}
