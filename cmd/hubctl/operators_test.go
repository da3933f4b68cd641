package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

func runArgs(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestRenamedFlags: the command a new user tried now works (--data is the
// data directory, the payload is --payload); notify's old --data payload
// spelling is refused with a message saying what changed; --data-dir
// still works and says it is deprecated.
func TestRenamedFlags(t *testing.T) {
	h := startHub(t)
	h.hold("bob", "phone")
	code, out, errs := runArgs("--addr", h.addr, "--data", h.data, "notify", "--user", "bob", "--topic", "t", "--payload", "{}")
	if code != 0 || !strings.Contains(out, "notified: event ") {
		t.Fatalf("hubctl --data DIR notify ... --payload '{}': exit %d, %q, %q; want it to work", code, out, errs)
	}
	code, out, errs = runArgs("--addr", h.addr, "notify", "--user", "bob", "--topic", "t", "--data", "{}")
	if code != exitUsage || !strings.Contains(errs, `--data "{}" looks like a payload: the payload is --payload now`) || out != "" {
		t.Fatalf("old spelling: exit %d, %q, %q; want exit 2 saying the payload is --payload now", code, out, errs)
	}
	code, out, errs = runArgs("--addr", h.addr, "--data-dir", h.data, "notify", "--user", "bob", "--topic", "t", "--payload", `{"x":1}`)
	if code != 0 || !strings.Contains(out, "notified: event ") || !strings.Contains(errs, "--data-dir is deprecated") {
		t.Fatalf("--data-dir: exit %d, %q, %q; want it to work and say it is deprecated", code, out, errs)
	}
	// The program is named once.
	code, _, errs = runArgs("ban", "--user", "u", "--reason", "r", "--for", "10")
	if code != exitUsage || !strings.HasPrefix(errs, "hubctl: ban: invalid argument \"10\" for \"--for\"") || strings.Count(errs, "hubctl") != 2 {
		t.Fatalf("ban --for 10: exit %d, %q; want one line naming hubctl once (and the help command)", code, errs)
	}
	// --until takes auditq's date-time without a zone.
	code, out, errs = h.ctl("ban", "--user", "bob", "--reason", "cool-down", "--until", "2099-12-06 16:00")
	if code != 0 || !strings.Contains(out, "banned: event ") {
		t.Fatalf("ban --until \"2099-12-06 16:00\": exit %d, %q, %q", code, out, errs)
	}
}

// TestFlagsMeanOneThing: no command of hubctl has a flag of its own whose
// name a global flag also has (notify's --data hid the data directory).
func TestFlagsMeanOneThing(t *testing.T) {
	root := newRoot(io.Discard, io.Discard)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// Not InheritedFlags: it leaves out the global flags a command's
		// own flag hides, which is the clash.
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

// TestKickExceptAndShorterBan: kick --except-session spares that session
// and ends the user's others; a second, shorter ban says the ban in force
// was kept, and until when.
func TestKickExceptAndShorterBan(t *testing.T) {
	h := startHub(t)
	keep, _ := h.hold("kim", "phone")
	h.hold("kim", "laptop")
	code, out, errs := h.ctl("kick", "--user", "kim", "--except-session", keep, "--reason", "signed out elsewhere")
	if code != 0 || !strings.Contains(out, "kicked: event ") || !strings.Contains(out, "1 live session(s) addressed") {
		t.Fatalf("kick --except-session: exit %d, %q, %q; want the laptop kicked", code, out, errs)
	}
	code, out, errs = h.ctl("session", "--session", keep)
	if code != 0 || !regexp.MustCompile(`session:\s+`+keep).MatchString(out) || !strings.Contains(out, "phone") {
		t.Fatalf("session: exit %d, %q, %q; want the spared session shown", code, out, errs)
	}
	code, _, errs = h.ctl("kick", "--user", "kim", "--except-session", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--reason", "x")
	if code != exitFailure || !strings.Contains(errs, "FailedPrecondition") || !strings.Contains(errs, "nothing was kicked") {
		t.Fatalf("kick sparing a session that is not live: exit %d, %q; want FailedPrecondition", code, errs)
	}
	if code, out, _ = h.ctl("ban", "--user", "kim", "--for", "2h", "--reason", "first"); code != 0 {
		t.Fatalf("ban: %d %q", code, out)
	}
	code, out, errs = h.ctl("ban", "--user", "kim", "--for", "10m", "--reason", "second")
	if code != 0 || !regexp.MustCompile(`^ban recorded as event \S+ \(seq \d+\) and changes nothing: the ban in force \(event \S+\) ends later and was kept, until \d{4}-\d\d-\d\dT`).MatchString(out) {
		t.Fatalf("shorter ban: exit %d, %q, %q; want it to say the ban in force was kept, and until when", code, out, errs)
	}
}

// TestBackupCommand: hubctl backup writes a whole ledger file (mode 0600)
// that opens and verifies, refuses to overwrite without --force, and
// sessions and backup pass through paging.
func TestBackupCommand(t *testing.T) {
	h := startHub(t)
	h.hold("ann", "phone")
	out := filepath.Join(t.TempDir(), "b.db")
	code, stdout, errs := h.ctl("backup", "--out", out)
	if code != 0 || !strings.Contains(stdout, "backup written to "+out) {
		t.Fatalf("backup: exit %d, %q, %q", code, stdout, errs)
	}
	fi, err := os.Stat(out)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v %v; want mode 0600", fi, err)
	}
	st, err := ledger.Open(out, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := st.Scan(t.Context(), 1, 0, func(r *ledger.Record) error {
		if r.Event.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED {
			n++
		}
		return nil
	}); err != nil || n != 1 {
		t.Fatalf("backup holds %d connects (%v); want ann's", n, err)
	}
	if _, err := st.Verify(t.Context(), 0, 0, nil); err != nil {
		t.Fatalf("backup does not verify: %v", err)
	}
	st.Close()
	code, _, errs = h.ctl("backup", "--out", out)
	if code != exitUsage || !strings.Contains(errs, "exists") {
		t.Fatalf("backup over an existing file: exit %d, %q; want a refusal", code, errs)
	}
	if code, _, errs = h.ctl("backup", "--out", out, "--force"); code != 0 {
		t.Fatalf("backup --force: exit %d, %q", code, errs)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 1 {
		t.Errorf("backup left %d files beside --out; want only it", len(entries))
	}
}

// TestVersion: --version prints the build.
func TestVersion(t *testing.T) {
	code, out, errs := runArgs("--version")
	if code != 0 || !strings.HasPrefix(out, "hubctl ") {
		t.Fatalf("--version: exit %d, %q, %q", code, out, errs)
	}
}
