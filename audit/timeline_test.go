package audit_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/audit/auditpb"
	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// storyStart is the first time of the ledgers these tests write.
var storyStart = time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)

// story appends events to a new ledger at times it chooses.
type story struct {
	tb  testing.TB
	ctx context.Context
	st  *ledger.Store
	now time.Time
}

func newStory(tb testing.TB, path string) *story {
	tb.Helper()
	s := &story{tb: tb, ctx: context.Background(), now: storyStart}
	st, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { return s.now }})
	if err != nil {
		tb.Fatal(err)
	}
	s.st = st
	return s
}

// at appends ev d after the previous event and returns its seq.
func (s *story) at(d time.Duration, ev *eventpb.Event) uint64 {
	s.tb.Helper()
	s.now = s.now.Add(d)
	st, err := s.st.Append(s.ctx, ev)
	if err != nil {
		s.tb.Fatal(err)
	}
	return st[0].Seq
}

// close writes projection snapshots every snapEvery records (0: none), as
// hubd's runner does, and closes the ledger.
func (s *story) close(snapEvery uint64) {
	s.tb.Helper()
	if snapEvery > 0 {
		if _, err := projections.WriteSnapshots(s.ctx, s.st, snapEvery); err != nil {
			s.tb.Fatal(err)
		}
	}
	if err := s.st.Close(); err != nil {
		s.tb.Fatal(err)
	}
}

func connectEv(user, device, session string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: user, Device: device, Session: session, Node: "node-1", Actor: user,
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{HeartbeatMs: 10000, Transport: "grpc"}}}
}

func disconnectEv(user, device, session string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: user, Device: device, Session: session, Node: "node-1", Actor: user,
		Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{
			Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}}}
}

// banEv bans user until until (zero: no expiry).
func banEv(user, actor, reason string, until time.Time) *eventpb.Event {
	b := &eventpb.UserBanned{}
	if !until.IsZero() {
		b.UntilUnixNano = until.UnixNano()
	}
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: user, Node: "node-1", Actor: actor, Reason: reason,
		Body: &eventpb.Event_UserBanned{UserBanned: b}}
}

func unbanEv(user, actor string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_UNBANNED, User: user, Node: "node-1", Actor: actor, Reason: "appeal"}
}

func notifyEv(user, topic string) *eventpb.Event {
	return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: user, Node: "node-1", Actor: "ops",
		Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{
			Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: topic, Payload: []byte(`{"n":1}`)}}}
}

// writeBanStory writes a ledger in which uma is banned again and again
// (with and without expiry, shorter and longer than the ban in force,
// some already over when recorded), unbanned now and then, while her
// session s-uma-long stays live and short sessions come and go; vic is
// banned and unbanned in between. The story is drawn from a fixed seed,
// so the same file comes out every time, ids aside. It returns the
// story's last time.
func writeBanStory(tb testing.TB, path string, steps int, snapEvery uint64) time.Time {
	tb.Helper()
	s := newStory(tb, path)
	rng := rand.New(rand.NewPCG(7, 11))
	untils := []time.Duration{0, 2 * time.Minute, 10 * time.Minute, 45 * time.Minute, 3 * time.Hour, -time.Minute}
	s.at(0, connectEv("uma", "desk", "s-uma-long"))
	var short []string
	next, sessions := 0, 0
	for range steps {
		d := time.Duration(10+rng.IntN(290)) * time.Second
		switch r := rng.IntN(100); {
		case r < 30:
			u := untils[rng.IntN(len(untils))]
			until := time.Time{}
			if u != 0 {
				until = s.now.Add(d + u)
			}
			s.at(d, banEv("uma", fmt.Sprintf("ops-%d", rng.IntN(3)), fmt.Sprintf("strike %d", next), until))
			next++
		case r < 36:
			s.at(d, unbanEv("uma", "ops-0"))
		case r < 44:
			s.at(d, banEv("vic", "ops-1", "vic's strike", s.now.Add(d+time.Duration(rng.IntN(60))*time.Minute)))
		case r < 48:
			s.at(d, unbanEv("vic", "ops-2"))
		case r < 62:
			s.at(d, notifyEv("uma", "news"))
		case r < 72 || len(short) == 0:
			sessions++
			id := fmt.Sprintf("s-uma-%d", sessions)
			short = append(short, id)
			s.at(d, connectEv("uma", "phone", id))
		case r < 86:
			i := rng.IntN(len(short))
			s.at(d, disconnectEv("uma", "phone", short[i]))
			short = slices.Delete(short, i, i+1)
		default:
			s.at(d, notifyEv("vic", "news"))
		}
	}
	s.at(time.Second, disconnectEv("uma", "desk", "s-uma-long"))
	end := s.now
	s.close(snapEvery)
	return end
}

// openRO opens the ledger at path read-only, closed when the test ends.
func openRO(tb testing.TB, path string) *ledger.Store {
	tb.Helper()
	st, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}

// banKeptAt is what a user_banned record's sentence must say, computed the
// way auditq did before it followed the ban state along the story: the
// whole state rebuilt at the record (the nearest snapshot and a replay),
// asked which ban is in force at the record's time. kept is false when
// the record's own ban is (it took effect) or none is.
func banKeptAt(ctx context.Context, st *ledger.Store, seq uint64, user string, at time.Time, id [16]byte) (projections.Ban, bool, error) {
	state, err := projections.StateAt(ctx, st, seq)
	if err != nil {
		return projections.Ban{}, false, err
	}
	b, ok := state.BanAt(user, at)
	if !ok || b.EventID == id {
		return projections.Ban{}, false, nil
	}
	return b, true, nil
}

// TestTimelineManyBans: a timeline with many bans of one user, told whole,
// from the middle of the log, in a window and as a session's story, says
// of every ban what the state rebuilt at that ban says (the ban in force
// that was kept, or nothing), and its text is the golden file's, which the
// timeline wrote when it rebuilt the state at every ban. The story has
// bans of both kinds, so a timeline that told every ban the same way fails.
func TestTimelineManyBans(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	end := writeBanStory(t, path, 400, 13)
	st := openRO(t, path)
	eng := audit.NewEngine(st)
	ctx := ctxT(t)
	span := end.Sub(storyStart)
	at := func(f float64) time.Time {
		return storyStart.Add(time.Duration(f * float64(span))).Truncate(time.Second)
	}
	queries := []struct {
		name string
		q    audit.TimelineQuery
	}{
		{"timeline --user uma", audit.TimelineQuery{User: "uma"}},
		{"timeline --session s-uma-long", audit.TimelineQuery{Session: "s-uma-long"}},
		{"timeline --user uma --since 40%", audit.TimelineQuery{User: "uma", Since: at(0.4)}},
		{"timeline --user uma --since 30% --until 70%", audit.TimelineQuery{User: "uma", Since: at(0.3), Until: at(0.7)}},
		{"timeline --user vic", audit.TimelineQuery{User: "vic"}},
	}
	var out strings.Builder
	kept, tookEffect := 0, 0
	for _, qq := range queries {
		fmt.Fprintf(&out, "## %s\n", qq.name)
		bans := 0
		err := eng.Timeline(ctx, qq.q, func(e audit.TimelineEntry) error {
			fmt.Fprintf(&out, "%d %s %s\n", e.Seq, e.Time.Format(time.RFC3339), e.Text)
			if e.Type != eventpb.EventType_EVENT_TYPE_USER_BANNED {
				return nil
			}
			bans++
			b, ok, err := banKeptAt(ctx, st, e.Seq, e.User, e.Time, e.ID)
			if err != nil {
				return err
			}
			says := strings.Contains(e.Text, "; changed nothing: ")
			switch {
			case ok && !strings.Contains(e.Text, fmt.Sprintf("; changed nothing: the ban in force (seq %d) ends later and was kept", b.Seq)):
				t.Errorf("%s: seq %d: got %q; want it to name the ban kept (seq %d)", qq.name, e.Seq, e.Text, b.Seq)
			case !ok && says:
				t.Errorf("%s: seq %d: got %q; want no \"changed nothing\": the ban took effect", qq.name, e.Seq, e.Text)
			case ok:
				kept++
			default:
				tookEffect++
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", qq.name, err)
		}
		if bans < 10 {
			t.Errorf("%s: %d bans told; want at least 10", qq.name, bans)
		}
	}
	if kept < 10 || tookEffect < 10 {
		t.Errorf("bans kept %d, took effect %d; want at least 10 of each", kept, tookEffect)
	}
	golden := filepath.Join("testdata", "timeline_bans.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got := out.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("timelines differ from %s at line %d:\ngot  %s\nwant %s", golden, i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("timelines: got %d lines; want %d (%s)", len(gl), len(wl), golden)
	}
}

// keptSecond is how the sentence of seq 6 of audittest.BanDamage ends.
const keptSecond = `; changed nothing: the ban in force (seq 2) ends later and was kept, with no expiry`

// TestTimelineBanAcrossDamage: the sentence of a ban needs the user's ban
// state. Rebuilding the whole state at the ban failed on any damaged
// record before it, anyone's, and the failure was taken for "this ban took
// effect": the sentence said so, wrongly, and nothing said why. The ban
// state is the user's bans alone: damage elsewhere changes nothing, and
// damage in the user's records is skipped and reported, as the story's own
// reads do (a *CorruptError: exit 3 in auditq, DataLoss with the seqs
// through the hub).
func TestTimelineBanAcrossDamage(t *testing.T) {
	for _, c := range []struct {
		name    string
		damaged uint64
		want    []uint64 // the seqs the story reports damaged
	}{
		{"another user's record", 4, nil},
		{"the user's own record", 5, []uint64{5}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := audittest.BanDamage(t)
			audittest.CutShort(t, path, c.damaged)
			st := openRO(t, path)
			for _, src := range []struct {
				name string
				s    interface {
					Timeline(context.Context, audit.TimelineQuery, func(audit.TimelineEntry) error) error
				}
			}{{"engine", audit.NewEngine(st)}, {"client", serveAudit(t, st)}} {
				for _, q := range []audit.TimelineQuery{{User: "uma"}, {Session: "s-uma-1"}, {User: "uma", Since: audittest.Start.Add(5 * time.Minute)}} {
					var told []string
					err := src.s.Timeline(ctxT(t), q, func(e audit.TimelineEntry) error {
						if e.Seq == 6 {
							told = append(told, e.Text)
						}
						return nil
					})
					var ce *audit.CorruptError
					switch {
					case c.want == nil && err != nil:
						t.Errorf("%s %+v: %v; want no error", src.name, q, err)
					case c.want != nil && (!errors.As(err, &ce) || !slices.Equal(ce.Seqs, c.want)):
						t.Errorf("%s %+v: error %v; want a CorruptError naming seq %v", src.name, q, err, c.want)
					}
					if len(told) != 1 || !strings.HasSuffix(told[0], keptSecond) {
						t.Errorf("%s %+v: seq 6 told as %q; want it to end %q", src.name, q, told, keptSecond)
					}
				}
			}
		})
	}
}

// TestTimelineBanStateError: a read that fails while a ban is told (here
// the ledger closes, as it does when hubd stops under a running query)
// ends the story with that error, naming the seq, instead of telling the
// ban as if it took effect; the Audit service answers it with a status
// (Unavailable), not a sentence.
func TestTimelineBanStateError(t *testing.T) {
	path := audittest.BanDamage(t)
	st := openRO(t, path)
	var told []uint64
	err := audit.NewEngine(st).Timeline(ctxT(t), audit.TimelineQuery{User: "uma"}, func(e audit.TimelineEntry) error {
		told = append(told, e.Seq)
		if e.Seq == 5 {
			return st.Close()
		}
		return nil
	})
	if !errors.Is(err, ledger.ErrClosed) || !strings.Contains(err.Error(), "seq 6") {
		t.Errorf("Timeline = %v; want ledger.ErrClosed at seq 6", err)
	}
	if slices.Contains(told, 6) {
		t.Errorf("told %v; want the story to end before seq 6", told)
	}

	st = openRO(t, path)
	stream := &closingStream{ctx: ctxT(t), st: st, at: 5}
	err = audit.NewServer(st).Timeline(&auditpb.TimelineRequest{User: "uma"}, stream)
	if s, _ := status.FromError(err); s.Code() != codes.Unavailable || !strings.Contains(s.Message(), "seq 6") {
		t.Errorf("Audit.Timeline = %v; want Unavailable naming seq 6", err)
	}
	if slices.Contains(stream.sent, 6) {
		t.Errorf("Audit.Timeline sent %v; want it to end before seq 6", stream.sent)
	}
}

// closingStream is a Timeline stream that closes st once it has sent the
// entry of seq at.
type closingStream struct {
	grpc.ServerStream // nil: the handler uses only Context and Send
	ctx               context.Context
	st                *ledger.Store
	at                uint64
	sent              []uint64
}

func (s *closingStream) Context() context.Context { return s.ctx }

func (s *closingStream) Send(e *auditpb.TimelineEntry) error {
	s.sent = append(s.sent, e.GetSeq())
	if e.GetSeq() == s.at {
		return s.st.Close()
	}
	return nil
}

// BenchmarkTimelineBans tells the story of a user banned 200 times in a
// log of 20,000 records (other users' sessions and notifications around
// hers), with snapshots every 2,000 records.
// "told" is Timeline as it is; "rebuild-per-ban" adds what the sentence
// of each ban used to cost, the state rebuilt at that ban (the nearest
// snapshot and a replay), as a same-run baseline. ns/ban is per ban told.
func BenchmarkTimelineBans(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ledger.db")
	// Records 2s apart: the ledger reads the clock once per record, so
	// the i-th record's time is known ahead and one append takes many.
	const step = 2 * time.Second
	clock := storyStart
	st, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { clock = clock.Add(step); return clock }})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 5))
	const records = 20_000
	evs := make([]*eventpb.Event, 0, records)
	bans := 0
	for i := range records {
		switch {
		case i%100 == 50:
			until := time.Time{}
			if bans%3 != 0 {
				until = storyStart.Add(time.Duration(i+1)*step + time.Duration(1+rng.IntN(120))*time.Minute)
			}
			evs = append(evs, banEv("uma", "ops", "strike", until))
			bans++
		case i%100 == 75:
			evs = append(evs, notifyEv("uma", "news"))
		default:
			u := fmt.Sprintf("user-%d", rng.IntN(500))
			if rng.IntN(2) == 0 {
				evs = append(evs, connectEv(u, "phone", fmt.Sprintf("s-%d", i)))
			} else {
				evs = append(evs, notifyEv(u, "news"))
			}
		}
	}
	ctx := context.Background()
	for chunk := range slices.Chunk(evs, 4096) {
		if _, err := st.Append(ctx, chunk...); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := projections.WriteSnapshots(ctx, st, 2000); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	st = openRO(b, path)
	eng := audit.NewEngine(st)
	for _, rebuild := range []bool{false, true} {
		name := "told"
		if rebuild {
			name = "rebuild-per-ban"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				err := eng.Timeline(ctx, audit.TimelineQuery{User: "uma"}, func(e audit.TimelineEntry) error {
					if e.Type != eventpb.EventType_EVENT_TYPE_USER_BANNED {
						return nil
					}
					n++
					if rebuild {
						_, _, err := banKeptAt(ctx, st, e.Seq, e.User, e.Time, e.ID)
						return err
					}
					return nil
				})
				if err != nil || n != bans {
					b.Fatalf("Timeline: %d bans, %v; want %d", n, err, bans)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*bans), "ns/ban")
		})
	}
}
