package audit_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fixture builds the fixture ledger and opens it read-only.
func fixture(t *testing.T) (string, *audit.Engine) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	audittest.Build(t, path)
	st, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return path, audit.NewEngine(st)
}

type eventSource interface {
	Events(ctx context.Context, f audit.Filter, follow bool, fn func(*ledger.Record) error) error
}

func seqs(t *testing.T, src eventSource, f audit.Filter) []uint64 {
	t.Helper()
	var out []uint64
	if err := src.Events(ctxT(t), f, false, func(r *ledger.Record) error {
		out = append(out, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexMatchesScan: a filter naming a user or session reads through the
// index; the answer must equal a plain filtered scan of the log, for every
// user and session of the fixture and with windows and limits.
func TestIndexMatchesScan(t *testing.T) {
	_, eng := fixture(t)
	var all []*ledger.Record
	if err := eng.Store().Scan(ctxT(t), 1, 0, func(r *ledger.Record) error { all = append(all, r); return nil }); err != nil {
		t.Fatal(err)
	}
	users, sessions := map[string]bool{"nobody": true}, map[string]bool{"s-nobody": true}
	for _, r := range all {
		users[r.Event.GetUser()] = true
		sessions[r.Event.GetSession()] = true
	}
	delete(users, "")
	delete(sessions, "")
	windows := [][2]time.Time{
		{},
		{audittest.Incident, {}},
		{{}, audittest.Incident},
		{audittest.Start.Add(10 * time.Minute), audittest.Start.Add(41 * time.Minute)},
	}
	check := func(f audit.Filter) {
		t.Helper()
		var want []uint64
		for _, r := range all {
			if f.Match(r) && (f.Since.IsZero() || !r.Time.Before(f.Since)) && (f.Until.IsZero() || r.Time.Before(f.Until)) {
				want = append(want, r.Seq)
			}
		}
		if f.Limit > 0 && uint64(len(want)) > f.Limit {
			want = want[:f.Limit]
		}
		if got := seqs(t, eng, f); !slices.Equal(got, want) {
			t.Errorf("filter %+v: got seqs %v; want %v", f, got, want)
		}
	}
	for _, w := range windows {
		for u := range users {
			check(audit.Filter{User: u, Since: w[0], Until: w[1]})
			check(audit.Filter{User: u, Since: w[0], Until: w[1], Limit: 2})
			check(audit.Filter{User: u, Since: w[0], Until: w[1], Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED}})
		}
		for s := range sessions {
			check(audit.Filter{Session: s, Since: w[0], Until: w[1]})
		}
		check(audit.Filter{Actor: "ops-olga", Since: w[0], Until: w[1]})
		check(audit.Filter{Device: "pc", Since: w[0], Until: w[1], Limit: 1})
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip("no tzdata:", err)
	}
	for _, c := range []struct {
		in   string
		loc  *time.Location
		want time.Time
	}{
		{"2026-03-01T10:00:00Z", nil, time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-03-01T10:00:00.25+01:00", nil, time.Date(2026, 3, 1, 9, 0, 0, 250e6, time.UTC)},
		{"2026-03-01 10:00", berlin, time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)},
		{"2026-03-01", nil, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{"now", nil, now},
		{"90s", nil, now.Add(-90 * time.Second)},
		{"2h", nil, now.Add(-2 * time.Hour)},
		{"3d", nil, now.Add(-72 * time.Hour)},
		{"1w", nil, now.Add(-7 * 24 * time.Hour)},
		{"106751d", nil, now.Add(-106751 * 24 * time.Hour)},
		{"1h30m", nil, now.Add(-90 * time.Minute)},
	} {
		got, err := audit.ParseTime(c.in, now, c.loc)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "10:15", "-2h", "2026-13-01", "3x", "d", "s", "NaNd", "-3d"} {
		if _, err := audit.ParseTime(bad, now, nil); !errors.Is(err, audit.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "malformed time") && bad != "" {
			t.Errorf("ParseTime(%q) error = %v; want ErrInvalid saying malformed time", bad, err)
		}
	}
	// A duration too long to be one wraps if converted: refused.
	for _, far := range []string{"1000000000000d", "106752d", "20000000000000w", "3000000h", "infd", "2562048h", "9223372037s"} {
		if _, err := audit.ParseTime(far, now, nil); !errors.Is(err, audit.ErrInvalid) || !strings.Contains(fmt.Sprint(err), "too far back") {
			t.Errorf("ParseTime(%q) error = %v; want ErrInvalid saying it is too far back", far, err)
		}
	}
}

func TestParseType(t *testing.T) {
	for _, in := range []string{"kick_requested", "KICK_REQUESTED", "EVENT_TYPE_KICK_REQUESTED", " Kick_Requested "} {
		if got, err := audit.ParseType(in); err != nil || got != eventpb.EventType_EVENT_TYPE_KICK_REQUESTED {
			t.Errorf("ParseType(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"unspecified", "kick", ""} {
		if _, err := audit.ParseType(bad); !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("ParseType(%q) error = %v; want ErrInvalid", bad, err)
		}
	}
	if got := audit.TypeName(eventpb.EventType(42)); got != "type_42" {
		t.Errorf("TypeName(42) = %q; want type_42", got)
	}
}

// TestClientMatchesEngine asks a live hub's Audit service every question
// the engine answers and wants equal Go values back.
func TestClientMatchesEngine(t *testing.T) {
	path, eng := fixture(t)
	h := audittest.StartHub(t, path)
	c := h.Client(t)
	ctx := ctxT(t)

	for _, f := range []audit.Filter{{}, {User: "mallory"}, {Session: "s-bob-2", Limit: 1}, {Actor: "ops-bob", Since: audittest.Incident}} {
		var a, b []*ledger.Record
		collect := func(out *[]*ledger.Record) func(*ledger.Record) error {
			return func(r *ledger.Record) error { *out = append(*out, r); return nil }
		}
		if err := eng.Events(ctx, f, false, collect(&a)); err != nil {
			t.Fatal(err)
		}
		if err := c.Events(ctx, f, false, collect(&b)); err != nil {
			t.Fatal(err)
		}
		if len(a) != len(b) {
			t.Fatalf("filter %+v: engine %d records, client %d", f, len(a), len(b))
		}
		for i := range a {
			if a[i].Seq != b[i].Seq || a[i].ID != b[i].ID || !a[i].Time.Equal(b[i].Time) || a[i].Hash != b[i].Hash ||
				!bytes.Equal(mustMarshal(t, a[i].Event), mustMarshal(t, b[i].Event)) {
				t.Errorf("filter %+v record %d: engine %+v, client %+v", f, i, a[i], b[i])
			}
		}
	}

	at := audittest.Incident
	s1, err1 := eng.SessionsAt(ctx, at, projections.Filter{})
	s2, err2 := c.SessionsAt(ctx, at, projections.Filter{})
	if err1 != nil || err2 != nil || !reflect.DeepEqual(normSessions(s1), normSessions(s2)) {
		t.Errorf("SessionsAt: engine %+v (%v); client %+v (%v)", s1, err1, s2, err2)
	}
	b1, err1 := eng.BansAt(ctx, at.Add(time.Minute), "")
	b2, err2 := c.BansAt(ctx, at.Add(time.Minute), "")
	if err1 != nil || err2 != nil || !reflect.DeepEqual(normBans(b1), normBans(b2)) || len(b1) != 1 {
		t.Errorf("BansAt: engine %+v (%v); client %+v (%v)", b1, err1, b2, err2)
	}

	var t1, t2 []audit.TimelineEntry
	q := audit.TimelineQuery{User: "mallory"}
	if err := eng.Timeline(ctx, q, func(e audit.TimelineEntry) error { t1 = append(t1, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Timeline(ctx, q, func(e audit.TimelineEntry) error { t2 = append(t2, e); return nil }); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(t1, t2) {
		t.Errorf("Timeline: engine %+v; client %+v", t1, t2)
	}

	var r1, r2 []uint64
	var c1, c2 []string
	rq := audit.ReplayQuery{From: audittest.Start.Add(14 * time.Minute), To: audittest.Start.Add(45 * time.Minute)}
	if err := eng.Replay(ctx, rq, func(s audit.Step) error {
		r1 = append(r1, s.Record.Seq)
		c1 = append(c1, changeKey(s))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Replay(ctx, rq, func(s audit.Step) error {
		r2 = append(r2, s.Record.Seq)
		c2 = append(c2, changeKey(s))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r1, r2) || !slices.Equal(c1, c2) {
		t.Errorf("Replay: engine %v %v; client %v %v", r1, c1, r2, c2)
	}

	v1, err1 := eng.Verify(ctx, audit.VerifyQuery{}, nil)
	v2, err2 := c.Verify(ctx, audit.VerifyQuery{}, nil)
	if err1 != nil || err2 != nil || !reflect.DeepEqual(v1, v2) || !v1.Intact() || v1.Checked != audittest.Events {
		t.Errorf("Verify: engine %+v (%v); client %+v (%v)", v1, err1, v2, err2)
	}
	st1, err1 := eng.Stats(ctx, audit.Filter{})
	st2, err2 := c.Stats(ctx, audit.Filter{})
	if err1 != nil || err2 != nil || !reflect.DeepEqual(st1, st2) || st1.Events != audittest.Events {
		t.Errorf("Stats: engine %+v (%v); client %+v (%v)", st1, err1, st2, err2)
	}

	// Errors cross the wire as the same sentinels.
	if _, err := c.SessionsAt(ctx, time.Time{}, projections.Filter{}); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("SessionsAt(zero) = %v; want ErrInvalid", err)
	}
	err := c.Timeline(ctx, audit.TimelineQuery{Session: "s-nobody"}, func(audit.TimelineEntry) error { return nil })
	if !errors.Is(err, audit.ErrNoSuchSession) {
		t.Errorf("Timeline(unknown) = %v; want ErrNoSuchSession", err)
	}
}

func changeKey(s audit.Step) string {
	ch := s.Change
	k := audit.TypeName(ch.Type)
	if ch.Started != nil {
		k += " +" + ch.Started.ID
	}
	if ch.Ended != nil {
		k += " -" + ch.Ended.ID + "/" + audit.CauseName(ch.Ended.Cause) + "/" + ch.Ended.CauseEventID.String()
	}
	for _, p := range ch.Pending {
		k += " !" + p.Session + "/" + p.Actor
	}
	if ch.Banned != nil {
		k += " ban " + ch.Banned.User + " " + ch.Banned.Until.UTC().String()
	}
	return k
}

// normSessions drops the monotonic clock and location differences that
// DeepEqual would see.
func normSessions(ls []audit.LiveSession) []audit.LiveSession {
	out := slices.Clone(ls)
	for i := range out {
		out[i].ConnectedAt = out[i].ConnectedAt.UTC()
		if p := out[i].Pending; p != nil {
			q := *p
			q.At = q.At.UTC()
			out[i].Pending = &q
		}
	}
	return out
}

func normBans(bs []projections.Ban) []projections.Ban {
	out := slices.Clone(bs)
	for i := range out {
		out[i].Since, out[i].Until = out[i].Since.UTC(), out[i].Until.UTC()
	}
	return out
}

// TestUnauthenticated: the hub's admin interceptor guards the Audit
// service; a call without the right token gets codes.Unauthenticated.
func TestUnauthenticated(t *testing.T) {
	path, _ := fixture(t)
	h := audittest.StartHub(t, path)
	ctx := ctxT(t)

	conn, err := grpc.NewClient(h.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = auditpb.NewAuditClient(conn).Stats(ctx, &auditpb.Filter{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("Stats without a token: %v; want Unauthenticated", err)
	}
	for _, tok := range []string{"", "wrong-token"} {
		c, err := audit.NewClient(h.Addr, tok)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Verify(ctx, audit.VerifyQuery{}, nil)
		if !errors.Is(err, audit.ErrUnauthenticated) {
			t.Errorf("token %q: Verify = %v; want ErrUnauthenticated", tok, err)
		}
		err = c.Events(ctx, audit.Filter{}, false, func(*ledger.Record) error { return nil })
		if !errors.Is(err, audit.ErrUnauthenticated) {
			t.Errorf("token %q: Events = %v; want ErrUnauthenticated", tok, err)
		}
		c.Close()
	}
}

// TestFollow tails the log through the hub: records appended after the
// call are delivered, the filter still applies, and cancelling ends the
// call without an error. Closing the server ends a follower with
// ErrUnavailable so the hub can stop.
func TestFollow(t *testing.T) {
	path, _ := fixture(t)
	h := audittest.StartHub(t, path)
	c := h.Client(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	got := make(chan *ledger.Record, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Events(ctx, audit.Filter{User: "erin"}, true, func(r *ledger.Record) error { got <- r; return nil })
	}()
	ev := func(user string) *eventpb.Event {
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user, Actor: "ops-test", Reason: "follow test"}
	}
	for _, u := range []string{"frank", "erin", "frank", "erin"} {
		if _, err := h.Store.Append(ctxT(t), ev(u)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		select {
		case r := <-got:
			if r.Event.GetUser() != "erin" || r.Seq <= audittest.Events {
				t.Errorf("followed record %d = seq %d user %q; want a new erin record", i, r.Seq, r.Event.GetUser())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("followed %d of 2 records in 5s", i)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("follow ended by cancel: %v; want nil", err)
	}

	// A follower still running when the server closes ends with Unavailable.
	go func() {
		done <- c.Events(ctxT(t), audit.Filter{}, true, func(*ledger.Record) error { return nil })
	}()
	time.Sleep(100 * time.Millisecond) // let the stream reach the follow loop
	h.Audit.Close()
	select {
	case err := <-done:
		if !errors.Is(err, audit.ErrUnavailable) {
			t.Errorf("follow ended by Close: %v; want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the follower")
	}
}

// TestCorruptSkipped: event queries skip a record that does not decode,
// deliver the rest and end with a CorruptError naming it, locally and
// through the hub.
func TestCorruptSkipped(t *testing.T) {
	eng, c := damaged(t, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("log")).Put(seqKey(9), []byte("garbage"))
	})
	for name, src := range map[string]eventSource{"engine": eng, "client": c} {
		for _, f := range []audit.Filter{{}, {User: "mallory"}, {Session: "s-mallory-1"}} {
			var got []uint64
			err := src.Events(ctxT(t), f, false, func(r *ledger.Record) error { got = append(got, r.Seq); return nil })
			var ce *audit.CorruptError
			if !errors.As(err, &ce) || !slices.Equal(ce.Seqs, []uint64{9}) || !errors.Is(err, ledger.ErrCorrupt) {
				t.Errorf("%s %+v: error %v; want a CorruptError naming seq 9", name, f, err)
			}
			if slices.Contains(got, 9) || len(got) == 0 {
				t.Errorf("%s %+v: delivered %v; want the other records", name, f, got)
			}
		}
	}
	res, err := eng.Verify(ctxT(t), audit.VerifyQuery{}, nil)
	if err != nil || res.Intact() || res.Broken.Seq != 9 {
		t.Errorf("Verify = %+v, %v; want broken at 9", res, err)
	}
	stats, err := c.Stats(ctxT(t), audit.Filter{})
	if ce := (*audit.CorruptError)(nil); !errors.As(err, &ce) || stats.Events != audittest.Events-1 {
		t.Errorf("Stats through the service = %d events, %v; want %d and a CorruptError", stats.Events, err, audittest.Events-1)
	}
}

// damaged builds the fixture, changes its file with change, and serves the
// result as the Engine and as a Client of the Audit service (serveAudit).
func damaged(t *testing.T, change func(tx *bolt.Tx) error) (*audit.Engine, *audit.Client) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	audittest.Build(t, path)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(change); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st := openRO(t, path)
	return audit.NewEngine(st), serveAudit(t, st)
}

// serveAudit serves st's Audit service on 127.0.0.1 and returns a client
// of it; both stop when the test ends. hubd refuses to start on a log its
// projections cannot replay, so a damaged one is served on a plain gRPC
// server.
func serveAudit(t *testing.T, st *ledger.Store) *audit.Client {
	t.Helper()
	g := grpc.NewServer()
	audit.RegisterServer(g, audit.NewServer(st))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	c, err := audit.NewClient(l.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// TestMissingRecords: the seqs of a log are consecutive, so a record
// deleted from the file leaves a gap that event queries, export and stats
// report (with every other record), locally and through the hub, and that
// replay stops at.
func TestMissingRecords(t *testing.T) {
	for _, c := range []struct {
		name        string
		change      func(log *bolt.Bucket) error
		wantSeqs    []uint64
		wantMissing []audit.SeqRange
		wantText    string
		wantReplay  string
	}{
		{"one deleted", func(log *bolt.Bucket) error { return log.Delete(seqKey(9)) },
			nil, []audit.SeqRange{{9, 9}}, "seq 9 missing from the log; the other records were read (run verify)", "seq 9 missing"},
		{"two deleted", func(log *bolt.Bucket) error {
			return errors.Join(log.Delete(seqKey(9)), log.Delete(seqKey(10)))
		}, nil, []audit.SeqRange{{9, 10}}, "seq 9 to 10 missing from the log", "seq 9 to 10 missing"},
		{"deleted before garbage", func(log *bolt.Bucket) error {
			return errors.Join(log.Delete(seqKey(9)), log.Put(seqKey(10), []byte("garbage")))
		}, []uint64{10}, []audit.SeqRange{{9, 9}}, "corrupt record at seq 10 skipped and seq 9 missing from the log", "seq 10"},
	} {
		t.Run(c.name, func(t *testing.T) {
			eng, client := damaged(t, func(tx *bolt.Tx) error { return c.change(tx.Bucket([]byte("log"))) })
			check := func(what string, err error) {
				t.Helper()
				var ce *audit.CorruptError
				if !errors.As(err, &ce) || !slices.Equal(ce.Seqs, c.wantSeqs) || !slices.Equal(ce.Missing, c.wantMissing) || !errors.Is(err, ledger.ErrCorrupt) {
					t.Errorf("%s: error %v; want a CorruptError with seqs %v and missing %v", what, err, c.wantSeqs, c.wantMissing)
					return
				}
				if !strings.Contains(err.Error(), c.wantText) {
					t.Errorf("%s: error %q; want it to say %q", what, err, c.wantText)
				}
			}
			for name, src := range map[string]eventSource{"engine": eng, "client": client} {
				for _, f := range []audit.Filter{{}, {User: "mallory"}, {Session: "s-mallory-1"}, {Since: audittest.Incident}, {Until: audittest.Incident.Add(time.Hour)}} {
					var got []uint64
					err := src.Events(ctxT(t), f, false, func(r *ledger.Record) error { got = append(got, r.Seq); return nil })
					check(fmt.Sprintf("%s events %+v", name, f), err)
					want := []uint64{8, 11}
					if f.Session != "" {
						want = []uint64{4} // s-mallory-1's records are 4 and 9
					}
					if !slices.Equal(slices.DeleteFunc(got, func(q uint64) bool { return !slices.Contains(want, q) }), want) {
						t.Errorf("%s events %+v: delivered %v; want the records around the damage", name, f, got)
					}
				}
			}
			for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
				var b bytes.Buffer
				err := eng.Export(ctxT(t), &b, audit.Filter{}, format, nil)
				check("export "+format, err)
				if n := bytes.Count(b.Bytes(), []byte("\n")); n < audittest.Events-3 {
					t.Errorf("export %s: %d lines; want the other records", format, n)
				}
			}
			for name, src := range map[string]interface {
				Stats(context.Context, audit.Filter) (audit.Stats, error)
			}{"engine": eng, "client": client} {
				st, err := src.Stats(ctxT(t), audit.Filter{})
				check(name+" stats", err)
				if want := uint64(audittest.Events - len(c.wantSeqs) - int(c.wantMissing[0].To-c.wantMissing[0].From+1)); st.Events != want {
					t.Errorf("%s stats: %d events; want %d", name, st.Events, want)
				}
			}
			for name, src := range map[string]interface {
				Timeline(context.Context, audit.TimelineQuery, func(audit.TimelineEntry) error) error
			}{"engine": eng, "client": client} {
				for _, q := range []audit.TimelineQuery{{User: "mallory"}, {Session: "s-mallory-1"}} {
					var got []uint64
					err := src.Timeline(ctxT(t), q, func(e audit.TimelineEntry) error { got = append(got, e.Seq); return nil })
					check(fmt.Sprintf("%s timeline %+v", name, q), err)
					if !slices.Contains(got, 4) || !slices.Contains(got, 8) || slices.Contains(got, 9) {
						t.Errorf("%s timeline %+v: entries %v; want the story without seq 9", name, q, got)
					}
				}
			}
			for name, src := range map[string]interface {
				Replay(context.Context, audit.ReplayQuery, func(audit.Step) error) error
			}{"engine": eng, "client": client} {
				var steps []uint64
				err := src.Replay(ctxT(t), audit.ReplayQuery{From: audittest.Start.Add(14 * time.Minute)}, func(s audit.Step) error {
					steps = append(steps, s.Record.Seq)
					return nil
				})
				if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), c.wantReplay) || !strings.Contains(err.Error(), "stops there") {
					t.Errorf("%s replay across the gap: %v; want it to stop saying %q", name, err, c.wantReplay)
				}
				if !slices.Equal(steps, []uint64{8}) {
					t.Errorf("%s replay across the gap: steps %v; want [8], the step before it", name, steps)
				}
			}
		})
	}
}

// TestStrayLogKeys: a key in the log that is no record (a 9-byte key
// between seq 9 and 10, a 1-byte key before seq 1) is reported as such;
// the records after it are sound and are delivered, seq 10 and seq 1
// included, by events, export and stats, locally and through the hub.
func TestStrayLogKeys(t *testing.T) {
	eng, client := damaged(t, func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		return errors.Join(log.Put(append(seqKey(9), 0), []byte("x")), log.Put([]byte{0}, []byte("y")))
	})
	all := make([]uint64, audittest.Events)
	for i := range all {
		all[i] = uint64(i + 1)
	}
	// keys are the stray keys a read from the start meets; one from later
	// on meets only the second.
	keys := []string{"log key 00 is 1 bytes", "log key 000000000000000900 is 9 bytes"}
	check := func(what string, err error, keys ...string) {
		t.Helper()
		var ce *audit.CorruptError
		if !errors.As(err, &ce) || len(ce.Seqs) != 0 || len(ce.Missing) != 0 || len(ce.Strays) != len(keys) || !errors.Is(err, ledger.ErrCorrupt) {
			t.Errorf("%s: error %#v; want a CorruptError naming %d stray keys and no record", what, err, len(keys))
			return
		}
		for _, k := range keys {
			if !strings.Contains(err.Error(), k) {
				t.Errorf("%s: error %q; want it to say %q", what, err, k)
			}
		}
	}
	for name, src := range map[string]eventSource{"engine": eng, "client": client} {
		for _, f := range []audit.Filter{{}, {Since: audittest.Start.Add(5 * time.Minute)}} {
			var got []uint64
			err := src.Events(ctxT(t), f, false, func(r *ledger.Record) error { got = append(got, r.Seq); return nil })
			want, met := all, keys
			if !f.Since.IsZero() {
				want, met = all[3:], keys[1:] // the fixture's records from 10:05 on
			}
			check(fmt.Sprintf("%s events %+v", name, f), err, met...)
			if !slices.Equal(got, want) {
				t.Errorf("%s events %+v: delivered %v; want %v", name, f, got, want)
			}
		}
		st, err := src.(interface {
			Stats(context.Context, audit.Filter) (audit.Stats, error)
		}).Stats(ctxT(t), audit.Filter{})
		check(name+" stats", err, keys...)
		if st.Events != audittest.Events {
			t.Errorf("%s stats: %d events; want %d", name, st.Events, audittest.Events)
		}
	}
	for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
		var b bytes.Buffer
		err := eng.Export(ctxT(t), &b, audit.Filter{}, format, nil)
		check("export "+format, err, keys...)
		want := audittest.Events
		if format == audit.FormatCSV {
			want++ // the header
		}
		if n := bytes.Count(b.Bytes(), []byte("\n")); n != want {
			t.Errorf("export %s: %d lines; want %d", format, n, want)
		}
		if format == audit.FormatJSONL && (!bytes.Contains(b.Bytes(), []byte(`"seq":10,`)) || !bytes.Contains(b.Bytes(), []byte(`"seq":1,`))) {
			t.Errorf("export %s lacks seq 1 or 10:\n%s", format, b.String())
		}
	}
}

// TestIndexDamaged: an index that cannot be read while the log can gives
// the answer from a scan of the log, and still says the file is damaged.
func TestIndexDamaged(t *testing.T) {
	eng, client := damaged(t, func(tx *bolt.Tx) error {
		tail := tx.Bucket([]byte("idx_tail"))
		var keys [][]byte
		_ = tail.ForEach(func(k, _ []byte) error { keys = append(keys, bytes.Clone(k)); return nil })
		for _, k := range keys {
			if err := tail.Put(k, []byte{0xff}); err != nil { // no index kind
				return err
			}
		}
		return nil
	})
	for name, src := range map[string]eventSource{"engine": eng, "client": client} {
		var got []uint64
		err := src.Events(ctxT(t), audit.Filter{User: "dave"}, false, func(r *ledger.Record) error { got = append(got, r.Seq); return nil })
		if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "read from the log instead") || !slices.Equal(got, []uint64{19, 21}) {
			t.Errorf("%s: events of dave: %v, %v; want [19 21] from the log and an error saying the index is damaged", name, got, err)
		}
	}
}

// TestVerifyRange: Verify reports progress over the range it resolved
// (a time --from included), and refuses a range that is backwards or past
// the head, locally and through the hub.
func TestVerifyRange(t *testing.T) {
	path, eng := fixture(t)
	h := audittest.StartHub(t, path)
	c := h.Client(t)
	for name, src := range map[string]interface {
		Verify(context.Context, audit.VerifyQuery, func(audit.VerifyProgress)) (audit.VerifyResult, error)
	}{"engine": eng, "client": c} {
		var last audit.VerifyProgress
		res, err := src.Verify(ctxT(t), audit.VerifyQuery{Since: audittest.Start.Add(5 * time.Minute)}, func(p audit.VerifyProgress) { last = p })
		if err != nil || !res.Intact() || res.From != 4 {
			t.Errorf("%s: Verify from 10:05 = %+v, %v; want intact from seq 4", name, res, err)
		}
		if want := (audit.VerifyProgress{From: 4, To: res.Head.Seq, Seq: res.Head.Seq}); last != want {
			t.Errorf("%s: last progress %+v; want %+v", name, last, want)
		}
		for _, q := range []audit.VerifyQuery{{From: 10, To: 5}, {From: 1000}, {Since: audittest.Start.Add(24 * time.Hour)}, {From: 10, Until: audittest.Start.Add(5 * time.Minute)}} {
			if _, err := src.Verify(ctxT(t), q, nil); !errors.Is(err, audit.ErrInvalid) {
				t.Errorf("%s: Verify %+v: %v; want ErrInvalid", name, q, err)
			}
		}
	}
}

func mustMarshal(t *testing.T, ev *eventpb.Event) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
