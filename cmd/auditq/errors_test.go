package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
)

// wantFail checks a failed run: its exit code, one line on stderr starting
// "auditq: ", containing every part of want.
func wantFail(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d; want %d\nstderr: %s", r.code, code, r.stderr)
	}
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "auditq: ") {
		t.Errorf("stderr = %q; want a line starting \"auditq: \"", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(last, w) {
			t.Errorf("error %q does not say %q", last, w)
		}
	}
}

func TestBadInput(t *testing.T) {
	notLedger := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notLedger, bytes.Repeat([]byte("not a ledger\n"), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	otherBolt := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(otherBolt, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	missing := filepath.Join(t.TempDir(), "nope.db")
	empty := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	dirData := t.TempDir() // its ledger.db is a directory
	if err := os.Mkdir(filepath.Join(dirData, "ledger.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	// The fixture's first pages: its bbolt header is there, the pages it
	// names are not (bbolt would map them and fault on the first read).
	whole, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	truncated := func(n int) string {
		p := filepath.Join(t.TempDir(), fmt.Sprintf("ledger-%d.db", n))
		if err := os.WriteFile(p, whole[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small, cut := truncated(4096), truncated(16384)
	zeros := filepath.Join(t.TempDir(), "zeros.db")
	if err := os.WriteFile(zeros, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	// A data folder with a ledger: the default source would read it, but
	// not to follow.
	withLedger := t.TempDir()
	audittest.Build(t, filepath.Join(withLedger, "ledger.db"))

	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"malformed time", []string{"--db", fixture, "events", "--since", "yesterday-ish"}, exitUsage,
			[]string{`--since: malformed time "yesterday-ish"`, "RFC3339"}},
		{"malformed at", []string{"--db", fixture, "sessions", "--at", "10:15"}, exitUsage, []string{`--at: malformed time "10:15"`}},
		{"huge relative time", []string{"--db", fixture, "events", "--since", "1000000000000d"}, exitUsage, []string{`--since: relative time "1000000000000d" is too far back`}},
		{"negative top", []string{"--db", fixture, "stats", "--top", "-1"}, exitUsage, []string{"--top -1: want 0 (every row) or more"}},
		{"window backwards", []string{"--db", fixture, "events", "--since", "2026-03-02", "--until", "2026-03-01"}, exitUsage, []string{"is not after"}},
		{"unknown type", []string{"--db", fixture, "events", "--type", "kicked"}, exitUsage,
			append([]string{`unknown event type "kicked"`}, audit.TypeNames()...)},
		{"unknown tz", []string{"--db", fixture, "--tz", "Mars/Olympus", "events"}, exitUsage, []string{"unknown time zone"}},
		{"unknown flag", []string{"--db", fixture, "events", "--usr", "bob"}, exitUsage, []string{"--usr", "auditq events --help"}},
		{"json and csv", []string{"--db", fixture, "events", "--json", "--csv"}, exitUsage, []string{"exclude each other"}},
		{"db and addr", []string{"--db", fixture, "--addr", "127.0.0.1:1", "events"}, exitUsage, []string{"not both"}},
		{"follow a file", []string{"--db", fixture, "events", "--follow"}, exitUsage, []string{"--follow needs a running hubd"}},
		{"follow without a hub", []string{"--data", withLedger, "events", "--follow"}, exitUsage,
			[]string{"--follow needs a running hubd and none has", "ledger.db open", "--addr"}},
		{"timeline of nobody", []string{"--db", fixture, "timeline"}, exitUsage, []string{"--session or --user"}},
		{"timeline of unknown session", []string{"--db", fixture, "timeline", "--session", "s-nobody"}, exitError, []string{"no such session", "s-nobody"}},
		{"replay without from", []string{"--db", fixture, "replay"}, exitUsage, []string{"--from"}},
		{"verify backwards", []string{"--db", fixture, "verify", "--from", "10", "--to", "5"}, exitUsage, []string{"--from 10 is after --to 5"}},
		{"verify past the head", []string{"--db", fixture, "verify", "--from", "99"}, exitUsage, []string{"--from 99 is past the log's head (seq 21)"}},
		{"verify after the last record", []string{"--db", fixture, "verify", "--from", "2026-03-02"}, exitUsage,
			[]string{"--from 2026-03-02T00:00:00Z is after the log's last record (seq 21 at 2026-03-01T11:20:00Z)"}},
		{"verify seq to time backwards", []string{"--db", fixture, "verify", "--from", "10", "--to", "2026-03-01T10:05:00Z"}, exitUsage,
			[]string{"the range ends (seq 4) before it starts (seq 10)"}},
		{"verify from 0", []string{"--db", fixture, "verify", "--from", "0"}, exitUsage, []string{"--from 0: seqs start at 1"}},
		{"export format", []string{"--db", fixture, "export", "--format", "xml"}, exitUsage, []string{"jsonl or csv"}},
		{"export format and --json", []string{"--db", fixture, "export", "--format", "csv", "--json"}, exitUsage, []string{"--format csv conflicts with --json"}},
		{"export format and --csv", []string{"--db", fixture, "--csv", "export", "--format", "jsonl"}, exitUsage, []string{"--format jsonl conflicts with --csv"}},
		{"missing file", []string{"--db", missing, "events"}, exitError, []string{"no ledger file at " + missing}},
		{"not a ledger file", []string{"--db", notLedger, "events"}, exitError, []string{notLedger + " is not a ledger file (truncated or not bbolt): it has no bbolt header"}},
		{"empty file", []string{"--db", empty, "events"}, exitError, []string{empty + " is empty: not a ledger file"}},
		{"dev null", []string{"--db", os.DevNull, "events"}, exitError, []string{os.DevNull + " is not a regular file, so not a ledger file"}},
		{"directory", []string{"--db", dir, "stats"}, exitError, []string{dir + " is a directory, not a ledger file"}},
		{"data folder holds a directory", []string{"--data", dirData, "events"}, exitError, []string{filepath.Join(dirData, "ledger.db") + " is a directory"}},
		{"4 KB of a ledger", []string{"--db", small, "verify"}, exitError, []string{small + " is not a ledger file (truncated or not bbolt): 4096 bytes, but its bbolt header says"}},
		{"truncated ledger", []string{"--db", cut, "sessions"}, exitError, []string{cut + " is not a ledger file (truncated or not bbolt): 16384 bytes, but its bbolt header says"}},
		{"4 KB of zeros", []string{"--db", zeros, "events"}, exitError, []string{zeros + " is not a ledger file (truncated or not bbolt)"}},
		{"another bbolt file", []string{"--db", otherBolt, "verify"}, exitError, []string{otherBolt, "not a sessionledger ledger file"}},
		{"no source", []string{"--data", t.TempDir(), "events"}, exitError, []string{"no ledger at", "is --data hubd's data directory?", "--addr", "--db"}},
		{"unknown command", []string{"whodunnit"}, exitUsage, []string{`unknown command "whodunnit"`}},
		{"misspelt command", []string{"evnts", "--user", "bob"}, exitUsage, []string{`unknown command "evnts" for "auditq"`, "Did you mean this? events"}},
		{"an argument", []string{"--db", fixture, "events", "bob"}, exitUsage, []string{`auditq events takes no arguments, only flags: "bob"`}},
		{"an argument to a cobra command", []string{"completion", "bash", "extra"}, exitUsage, []string{`unknown command "extra"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, nil, c.args...)
			wantFail(t, r, c.code, c.want...)
			if r.stdout != "" {
				t.Errorf("stdout = %q; want nothing", r.stdout)
			}
		})
	}
}

// editLog changes the log bucket of a copy of the fixture with edit and
// returns the copy's path.
func editLog(t *testing.T, edit func(log *bolt.Bucket) error) string {
	t.Helper()
	path := audittest.Copy(t, fixture)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return edit(tx.Bucket([]byte("log"))) }); err != nil {
		t.Fatal(err)
	}
	return path
}

// corrupt rewrites the stored value of seq in a copy of the fixture.
func corrupt(t *testing.T, seq uint64, change func([]byte) []byte) string {
	t.Helper()
	k := binary.BigEndian.AppendUint64(nil, seq)
	return editLog(t, func(log *bolt.Bucket) error { return log.Put(k, change(bytes.Clone(log.Get(k)))) })
}

func TestCorruptRecord(t *testing.T) {
	// Seq 12 cut short: it no longer decodes.
	path := corrupt(t, 12, func(v []byte) []byte { return v[:10] })

	r := run(t, nil, "--db", path, "events", "--json")
	wantFail(t, r, exitIntegrity, "corrupt record at seq 12 skipped", "the other records were read", "verify")
	if n := strings.Count(r.stdout, "\n"); n != audittest.Events-1 {
		t.Errorf("events printed %d records; want every other one (%d)", n, audittest.Events-1)
	}
	if strings.Contains(r.stdout, `"seq":12,`) {
		t.Errorf("the corrupt record was printed")
	}

	r = run(t, nil, "--db", path, "stats", "--json")
	wantFail(t, r, exitIntegrity, "seq 12")
	if !strings.Contains(r.stdout, `"events":20`) {
		t.Errorf("stats of the readable records missing: %s", r.stdout)
	}

	// A timeline tells the story without it, and names it.
	for _, args := range [][]string{{"timeline", "--user", "bob"}, {"timeline", "--session", "s-bob-1"}, {"timeline", "--user", "bob", "--json"}} {
		r = run(t, nil, append([]string{"--db", path}, args...)...)
		wantFail(t, r, exitIntegrity, "corrupt record at seq 12 skipped")
		if !strings.Contains(r.stdout, "s-bob-2") || strings.Contains(r.stdout, "wifi lost") {
			t.Errorf("auditq %s printed:\n%s\nwant the story around seq 12", strings.Join(args, " "), r.stdout)
		}
	}

	r = run(t, nil, "--db", path, "verify")
	if r.code != exitIntegrity || !strings.Contains(r.stdout, "NOT INTACT: first bad seq 12") {
		t.Errorf("verify: exit %d, output %q; want %d naming seq 12", r.code, r.stdout, exitIntegrity)
	}

	// Rebuilding state across the damaged record cannot be trusted: the
	// query stops and names it. Before it, state queries still work.
	r = run(t, nil, "--db", path, "sessions", "--at", "2026-03-01T10:25:00Z")
	wantFail(t, r, exitIntegrity, "seq 12")
	r = run(t, nil, "--db", path, "sessions", "--at", "2026-03-01T10:15:00Z")
	if r.code != 0 || !strings.Contains(r.stdout, "s-mallory-1") {
		t.Errorf("sessions before the damage: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// deleteRecord deletes the record at seq in a copy of the fixture.
func deleteRecord(t *testing.T, seq uint64) string {
	t.Helper()
	return editLog(t, func(log *bolt.Bucket) error { return log.Delete(binary.BigEndian.AppendUint64(nil, seq)) })
}

// TestDeletedRecord: seq 9 (mallory's disconnect) deleted. The seqs of a
// log are consecutive, so every query that reads across the gap says so.
func TestDeletedRecord(t *testing.T) {
	path := deleteRecord(t, 9)
	for _, args := range [][]string{
		{"events", "--json"},
		{"events", "--user", "mallory"},
		{"events", "--since", "2026-03-01T10:15:00Z", "--csv"},
		{"export", "--format", "jsonl"},
		{"export", "--format", "csv"},
		{"stats", "--json"},
	} {
		r := run(t, nil, append([]string{"--db", path}, args...)...)
		wantFail(t, r, exitIntegrity, "seq 9 missing from the log", "the other records were read", "verify")
		if !strings.Contains(r.stdout, "10") || strings.Contains(r.stdout, `"seq":9,`) {
			t.Errorf("auditq %s printed:\n%s\nwant the records but seq 9", strings.Join(args, " "), r.stdout)
		}
	}
	r := run(t, nil, "--db", path, "stats", "--json")
	if !strings.Contains(r.stdout, `"events":20`) {
		t.Errorf("stats of the records still there missing: %s", r.stdout)
	}
	r = run(t, nil, "--db", path, "replay", "--from", "2026-03-01T10:14:00Z")
	wantFail(t, r, exitIntegrity, "seq 9 missing from the log", "stops there")
	if !strings.Contains(r.stdout, "kick_requested") || strings.Contains(r.stdout, "user_banned") {
		t.Errorf("replay printed:\n%s\nwant the step before the gap and none after it", r.stdout)
	}
	r = run(t, nil, "--db", path, "verify")
	if r.code != exitIntegrity || !strings.Contains(r.stdout, "first bad seq 9: missing") {
		t.Errorf("verify: exit %d, output %q; want %d naming seq 9", r.code, r.stdout, exitIntegrity)
	}
}

func TestTamperedRecord(t *testing.T) {
	// Seq 8's reason changed in place: it decodes, but its hash no longer
	// matches.
	path := corrupt(t, audittest.KickSeq, func(v []byte) []byte {
		return bytes.Replace(v, []byte("spamming the lobby"), []byte("spanning the lobby"), 1)
	})
	r := run(t, nil, "--db", path, "verify", "--json")
	if r.code != exitIntegrity || !strings.Contains(r.stdout, `"intact":false`) || !strings.Contains(r.stdout, `"bad_seq":8`) {
		t.Errorf("verify: exit %d, output %q; want %d naming seq 8", r.code, r.stdout, exitIntegrity)
	}
	r = run(t, nil, "--db", path, "verify", "--from", "9")
	if r.code != 0 {
		t.Errorf("verify --from 9 (after the tampered record): exit %d; want 0\n%s", r.code, r.stdout)
	}
}

// TestLockedFile holds the ledger open for writing, as a running hubd does
// (bbolt's flock conflicts between two opens even in one process), and
// wants auditq to say so within a second and point to --addr or a backup.
func TestLockedFile(t *testing.T) {
	path := audittest.Copy(t, fixture)
	st, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := run(t, nil, "--db", path, "events")
	wantFail(t, r, exitError, path, "locked by another process", "--addr", "backup")
	if r.took > time.Second {
		t.Errorf("took %v to report the lock; want under a second", r.took)
	}
}

func TestAdminToken(t *testing.T) {
	h := audittest.StartHub(t, fixture)
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"wrong token", []string{"--addr", h.Addr, "--token", "not-the-token", "verify"}, nil},
		{"wrong env token", []string{"--addr", h.Addr, "--data", t.TempDir(), "sessions"}, map[string]string{"HUBD_ADMIN_TOKEN": "nope"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, c.args...)
			wantFail(t, r, exitError, "hub at "+h.Addr+" refused the admin token", "--token")
		})
	}
	// No token at all is not a refusal: auditq says it found none, where it
	// looked, as hubctl does, and asks the hub nothing.
	t.Run("no token", func(t *testing.T) {
		dir := t.TempDir()
		r := run(t, nil, "--addr", h.Addr, "--data", dir, "events")
		wantFail(t, r, exitError, "no admin token: "+filepath.Join(dir, "admin.token")+" does not exist", "--token")
		if strings.Contains(r.stderr, "refused") {
			t.Errorf("says the hub refused a token that was never sent: %s", r.stderr)
		}
	})
	t.Run("env token", func(t *testing.T) {
		r := run(t, map[string]string{"HUBD_ADMIN_TOKEN": h.Token}, "--addr", h.Addr, "--data", t.TempDir(), "verify")
		if r.code != 0 {
			t.Fatalf("exit %d\n%s", r.code, r.stderr)
		}
	})
}

// TestDefaultSource: without --db or --addr, auditq asks the local hubd
// (here at a test address) with the token from the data folder, and reads
// DATA/ledger.db when no hubd answers.
func TestDefaultSource(t *testing.T) {
	h := audittest.StartHub(t, fixture)
	// The hub holds its ledger's lock, so only the hub can answer.
	r := run(t, map[string]string{"localAddr": h.Addr}, "--data", h.Data, "events", "--user", "mallory", "--type", "kick_requested")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("through the local hub: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// --follow takes the local hub too (--until in the past: the backlog
	// only, so the command ends).
	r = run(t, map[string]string{"localAddr": h.Addr}, "--data", h.Data, "events", "--follow", "--user", "mallory", "--until", "2026-03-01T10:15:01Z")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("follow through the local hub: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	data := t.TempDir()
	audittest.Build(t, filepath.Join(data, "ledger.db"))
	r = run(t, nil, "--data", data, "events", "--user", "mallory", "--type", "kick_requested")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("from DATA/ledger.db: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// $AUDITQ_DATA stands for --data, $AUDITQ_ADDR for --addr (which a
	// --db outranks).
	r = run(t, map[string]string{"AUDITQ_DATA": data}, "events", "--user", "mallory", "--type", "kick_requested")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("from $AUDITQ_DATA/ledger.db: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, map[string]string{"AUDITQ_ADDR": h.Addr, "AUDITQ_DATA": h.Data}, "events", "--follow", "--user", "mallory", "--until", "2026-03-01T10:15:01Z")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("through $AUDITQ_ADDR: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = run(t, map[string]string{"AUDITQ_ADDR": "127.0.0.1:1"}, "--db", filepath.Join(data, "ledger.db"), "events", "--user", "mallory")
	if r.code != 0 || !strings.Contains(r.stdout, "spamming the lobby") {
		t.Fatalf("--db with $AUDITQ_ADDR set: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestConnectTimeout: a hub address that accepts connections but never
// answers (a hung hubd, a firewall that swallows the handshake) fails
// within the connect timeout instead of hanging.
func TestConnectTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"--addr", map[string]string{"connectTimeout": "300ms"}, []string{"--addr", l.Addr().String(), "--token", "t", "verify"}},
		{"$AUDITQ_ADDR", map[string]string{"connectTimeout": "300ms", "AUDITQ_ADDR": l.Addr().String(), "HUBD_ADMIN_TOKEN": "t"}, []string{"events"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.env, c.args...)
			wantFail(t, r, exitError, "cannot reach hubd at "+l.Addr().String())
			if r.took > 5*time.Second {
				t.Errorf("took %v to give up; want about the 300ms connect timeout", r.took)
			}
		})
	}
}
