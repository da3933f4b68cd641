package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// Benchmarks over a generated ledger. Its size is AUDIT_BENCH_EVENTS
// (default 200,000; the targets are for 10,000,000). The file is
// generated once and kept in AUDIT_BENCH_DIR (default the system temp
// folder) under a name that says its size and generator version, so later
// runs reuse it:
//
//	AUDIT_BENCH_EVENTS=10000000 go test -run '^$' -bench . -benchtime 20x ./audit/
const genVersion = 1

var (
	benchOnce  sync.Once
	benchPath  string
	benchUsers int
	benchErr   error
)

func benchEvents() int {
	if n, err := strconv.Atoi(os.Getenv("AUDIT_BENCH_EVENTS")); err == nil && n > 0 {
		return n
	}
	return 200_000
}

// benchLedger returns the generated ledger's path, generating it if needed.
func benchLedger(b *testing.B) (string, int) {
	benchOnce.Do(func() {
		n := benchEvents()
		dir := os.Getenv("AUDIT_BENCH_DIR")
		if dir == "" {
			dir = os.TempDir()
		}
		benchUsers = max(n/100, 10) // about 100 events per user
		benchPath = filepath.Join(dir, fmt.Sprintf("audit-bench-v%d-%d.db", genVersion, n))
		if _, err := os.Stat(benchPath); err == nil {
			return
		}
		start := time.Now()
		tmp := benchPath + ".tmp"
		os.Remove(tmp)
		if benchErr = generate(tmp, n, benchUsers); benchErr != nil {
			return
		}
		benchErr = os.Rename(tmp, benchPath)
		fmt.Fprintf(os.Stderr, "generated %d events for %d users in %v: %s\n", n, benchUsers, time.Since(start).Round(time.Second), benchPath)
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchPath, benchUsers
}

// benchStart is the generated log's first time; events are 10ms apart.
var benchStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const benchStep = 10 * time.Millisecond

// generate writes n events: users connect (about 5,000 live at a time),
// get notified, disconnect; one event in 200 is a kick by one of 20
// operators followed by the kicked session's end, one in 2,000 a ban.
// Projection snapshots are written every 100,000 events, as hubd's runner
// does by default.
func generate(path string, n, users int) error {
	t := benchStart.Add(-benchStep)
	clock := func() time.Time { t = t.Add(benchStep); return t }
	st, err := ledger.Open(path, &ledger.Options{Now: clock})
	if err != nil {
		return err
	}
	defer st.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	type live struct{ user, device, session string }
	var lives []live
	nextSess := 0
	batch := make([]*eventpb.Event, 0, 4096)
	ctx := context.Background()
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, err := st.Append(ctx, batch...)
		batch = batch[:0]
		return err
	}
	add := func(ev *eventpb.Event) error {
		batch = append(batch, ev)
		if len(batch) == cap(batch) {
			return flush()
		}
		return nil
	}
	end := func(i int, cause eventpb.DisconnectCause, actor string) *eventpb.Event {
		l := lives[i]
		lives[i] = lives[len(lives)-1]
		lives = lives[:len(lives)-1]
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: l.user, Device: l.device, Session: l.session,
			Node: "node-1", Actor: actor, Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{
				Cause: cause, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}}}
	}
	for i := 0; i < n; {
		var evs []*eventpb.Event
		x := rng.IntN(2000)
		switch {
		case x == 0:
			u := "u" + strconv.Itoa(rng.IntN(users))
			evs = append(evs, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: u, Node: "node-1",
				Actor: "ops-" + strconv.Itoa(rng.IntN(20)), Reason: "generated ban",
				Body: &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: t.Add(time.Hour).UnixNano()}}})
		case x < 10 && len(lives) > 0:
			j := rng.IntN(len(lives))
			l := lives[j]
			op := "ops-" + strconv.Itoa(rng.IntN(20))
			evs = append(evs, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_KICK_REQUESTED, User: l.user, Device: l.device, Session: l.session,
				Node: "node-1", Actor: op, Reason: "generated kick",
				Body: &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget_KICK_TARGET_SESSION,
					Mode: eventpb.KickMode_KICK_MODE_GRACEFUL, Reconnect: eventpb.Reconnect_RECONNECT_ALLOWED}}})
			evs = append(evs, end(j, eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED, op))
		case len(lives) < 5000 || x < 700:
			u := rng.IntN(users)
			l := live{"u" + strconv.Itoa(u), "d" + strconv.Itoa(rng.IntN(3)), "s" + strconv.Itoa(nextSess)}
			nextSess++
			lives = append(lives, l)
			evs = append(evs, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: l.user, Device: l.device, Session: l.session,
				Node: "node-1", Actor: l.user, Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{
					RemoteAddr: "10.1.2.3:40000", HeartbeatMs: 10000}}})
		case x < 1300:
			l := lives[rng.IntN(len(lives))]
			evs = append(evs, &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: l.user, Session: l.session, Node: "node-1",
				Actor: "system", Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{
					Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_SESSION, Topic: "chat", Payload: []byte(`{"msg":"hello there"}`)}}})
		default:
			evs = append(evs, end(rng.IntN(len(lives)), eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED, "system"))
		}
		for _, ev := range evs {
			if i == n {
				break
			}
			if err := add(ev); err != nil {
				return err
			}
			i++
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if _, err := projections.WriteSnapshots(ctx, st, 100_000); err != nil {
		return err
	}
	return st.Close()
}

func openBench(b *testing.B) (*audit.Engine, int) {
	path, users := benchLedger(b)
	st, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return audit.NewEngine(st), users
}

// BenchmarkEventsByUser: auditq events --user U, through the user index.
func BenchmarkEventsByUser(b *testing.B) {
	eng, users := openBench(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 4))
	var found int
	b.ResetTimer()
	for b.Loop() {
		u := "u" + strconv.Itoa(rng.IntN(users))
		if err := eng.Events(ctx, audit.Filter{User: u}, false, func(*ledger.Record) error { found++; return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
	b.ReportMetric(float64(found)/float64(b.N), "events/query")
}

// BenchmarkSessionsAt: auditq sessions --at T, from the nearest projection
// snapshot.
func BenchmarkSessionsAt(b *testing.B) {
	eng, _ := openBench(b)
	ctx := context.Background()
	head := eng.Store().Head()
	span := head.Time.Sub(benchStart)
	rng := rand.New(rand.NewPCG(5, 6))
	var live int
	b.ResetTimer()
	for b.Loop() {
		at := benchStart.Add(time.Duration(rng.Int64N(int64(span))))
		ls, err := eng.SessionsAt(ctx, at, projections.Filter{})
		if err != nil {
			b.Fatal(err)
		}
		live += len(ls)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/query")
	b.ReportMetric(float64(live)/float64(b.N), "live/query")
}

// BenchmarkVerify: auditq verify over the whole log.
func BenchmarkVerify(b *testing.B) {
	eng, _ := openBench(b)
	ctx := context.Background()
	var n uint64
	b.ResetTimer()
	for b.Loop() {
		res, err := eng.Verify(ctx, audit.VerifyQuery{}, nil)
		if err != nil || !res.Intact() {
			b.Fatal(err, res.Broken)
		}
		n += res.Checked
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkExport: auditq export --format jsonl|csv over the whole log,
// to io.Discard, with the peak heap in use sampled during the run (flat
// memory means it does not grow with the log).
func BenchmarkExport(b *testing.B) {
	for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
		b.Run(format, func(b *testing.B) {
			eng, _ := openBench(b)
			benchExport(b, func() (uint64, error) {
				var n uint64
				err := eng.Export(context.Background(), countWriter{io.Discard, &n}, audit.Filter{}, format, time.UTC)
				return n, err
			})
		})
	}
}

// BenchmarkExportViaEvents is export as it was before Engine.Export: each
// record Events delivers, decoded in full and formatted with AppendJSON.
// It is the baseline BenchmarkExport is compared with in the same run.
func BenchmarkExportViaEvents(b *testing.B) {
	eng, _ := openBench(b)
	benchExport(b, func() (uint64, error) {
		var n uint64
		var buf []byte
		err := eng.Events(context.Background(), audit.Filter{}, false, func(r *ledger.Record) error {
			buf = audit.AppendJSON(buf[:0], r, time.UTC)
			buf = append(buf, '\n')
			_, err := io.Discard.Write(buf)
			n++
			return err
		})
		return n, err
	})
}

// countWriter counts the lines written through it.
type countWriter struct {
	io.Writer
	n *uint64
}

func (w countWriter) Write(p []byte) (int, error) {
	*w.n += uint64(bytes.Count(p, []byte{'\n'}))
	return w.Writer.Write(p)
}

func benchExport(b *testing.B, export func() (uint64, error)) {
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	peak := sampleHeap()
	var n uint64
	b.ResetTimer()
	for b.Loop() {
		m, err := export()
		if err != nil {
			b.Fatal(err)
		}
		n += m
	}
	b.StopTimer()
	p := peak()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(p)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(base.HeapInuse)/(1<<20), "start-heap-MiB")
}

// sampleHeap samples HeapInuse every 20ms until the returned function is
// called, which returns the peak.
func sampleHeap() func() uint64 {
	stop := make(chan struct{})
	done := make(chan uint64)
	go func() {
		var peak uint64
		var m runtime.MemStats
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				done <- peak
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(stop); return <-done }
}
