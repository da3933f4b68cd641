package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/ledger/ledgertest"
)

var ctx = context.Background()

func connected(user, session string) *eventpb.Event {
	return ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, user, session)
}

func TestAppendAssignsDenseOrderedStamps(t *testing.T) {
	s := ledgertest.Open(t, nil)
	var all []ledger.Stamp
	for i := 0; i < 10; i++ {
		st, err := s.Append(ctx, connected("u1", fmt.Sprintf("s%d", i)), connected("u2", fmt.Sprintf("t%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, st...)
	}
	for i, st := range all {
		if st.Seq != uint64(i+1) {
			t.Fatalf("stamp %d: got seq %d; want %d", i, st.Seq, i+1)
		}
		if i > 0 && st.ID.Compare(all[i-1].ID) <= 0 {
			t.Fatalf("stamp %d: id %s not after %s", i, st.ID, all[i-1].ID)
		}
	}
	head := s.Head()
	if head.Seq != 20 || head.Hash != all[19].Hash || head.ID != all[19].ID {
		t.Fatalf("head: got %+v; want seq 20 with the last stamp's hash and id", head)
	}
	r, err := s.Get(7)
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != all[6].ID || r.Event.GetUser() != "u1" || r.Event.GetSession() != "s3" || r.Topic != ledger.EventsTopic {
		t.Fatalf("get 7: got %+v", r)
	}
	if _, err := s.Get(21); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("get 21: got %v; want ErrNotFound", err)
	}
}

func TestInvalidEventRejectedAndNothingWritten(t *testing.T) {
	s := ledgertest.Open(t, nil)
	_, err := s.Append(ctx, connected("u", "s"), &eventpb.Event{User: "u"})
	if !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("got %v; want ErrInvalidEvent", err)
	}
	if _, err := s.Append(ctx, nil); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("nil event: got %v; want ErrInvalidEvent", err)
	}
	if h := s.Head(); h.Seq != 0 {
		t.Fatalf("head after rejected batch: got seq %d; want 0", h.Seq)
	}
}

func TestIndexesAndTimeRanges(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	s := ledgertest.Open(t, &ledger.Options{Now: ledgertest.FixedClock(start, time.Second)})
	for i := 0; i < 100; i++ {
		user := fmt.Sprintf("u%d", i%7)
		if _, err := s.Append(ctx, connected(user, fmt.Sprintf("s%d", i%13))); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	if err := s.ByUser(ctx, "u3", 0, 0, func(r *ledger.Record) error {
		if r.Event.GetUser() != "u3" {
			t.Errorf("by user u3: seq %d is about %q", r.Seq, r.Event.GetUser())
		}
		got = append(got, r.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []uint64{}
	for i := 0; i < 100; i++ {
		if i%7 == 3 {
			want = append(want, uint64(i+1))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("by user u3: got %v; want %v", got, want)
	}
	// "u3" must not match "u31"-style prefixes: add one and recheck count.
	if _, err := s.Append(ctx, connected("u31", "x")); err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = s.ByUser(ctx, "u3", 0, 0, func(*ledger.Record) error { n++; return nil })
	if n != len(want) {
		t.Fatalf("by user u3 after adding u31: got %d records; want %d", n, len(want))
	}
	got = got[:0]
	_ = s.BySession(ctx, "s5", 20, 80, func(r *ledger.Record) error { got = append(got, r.Seq); return nil })
	if fmt.Sprint(got) != fmt.Sprint([]uint64{32, 45, 58, 71}) {
		t.Fatalf("by session s5 in [20,80]: got %v", got)
	}

	// Record i (1-based) has time start + (i-1)s.
	seq, err := s.SeqAtTime(start.Add(10*time.Second + time.Millisecond))
	if err != nil || seq != 12 {
		t.Fatalf("seq at start+10.001s: got %d, %v; want 12", seq, err)
	}
	if seq, _ := s.SeqAtTime(start.Add(-time.Hour)); seq != 1 {
		t.Fatalf("seq before the log: got %d; want 1", seq)
	}
	if seq, _ := s.SeqAtTime(start.Add(time.Hour)); seq != s.Head().Seq+1 {
		t.Fatalf("seq after the log: got %d; want head+1", seq)
	}
	got = got[:0]
	err = s.ScanTime(ctx, start.Add(5*time.Second), start.Add(9*time.Second), func(r *ledger.Record) error {
		got = append(got, r.Seq)
		return nil
	})
	if err != nil || fmt.Sprint(got) != fmt.Sprint([]uint64{6, 7, 8, 9}) {
		t.Fatalf("scan [start+5s, start+9s): got %v, %v; want [6 7 8 9]", got, err)
	}
}

func TestTimeNeverGoesBackwards(t *testing.T) {
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	times := []time.Time{base, base.Add(-time.Hour), base.Add(2 * time.Millisecond), base}
	i := 0
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := times[i%len(times)]
		i++
		return t
	}
	s := ledgertest.Open(t, &ledger.Options{Now: clock})
	for j := 0; j < 8; j++ {
		if _, err := s.Append(ctx, connected("u", "s")); err != nil {
			t.Fatal(err)
		}
	}
	// ledgertest's cleanup checks ids and times increase; check the clamp.
	r, _ := s.Get(2)
	if !r.Time.Equal(base) {
		t.Fatalf("record 2: got time %v; want clamped to %v", r.Time, base)
	}
}

func TestReopenContinuesChainAndOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	fixed := time.Date(2026, 3, 3, 3, 3, 3, 0, time.UTC)
	for round := 0; round < 3; round++ {
		// A stopped clock forces same-millisecond ids across reopen.
		s, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { return fixed }})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			if _, err := s.Append(ctx, connected("u", "s")); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if ro.Head().Seq != 15 {
		t.Fatalf("head: got %d; want 15", ro.Head().Seq)
	}
	ledgertest.Check(t, ro)
	if _, err := ro.Append(ctx, connected("u", "s")); !errors.Is(err, ledger.ErrReadOnly) {
		t.Fatalf("append read-only: got %v; want ErrReadOnly", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ledger.Open(filepath.Join(dir, "missing.db"), &ledger.Options{ReadOnly: true}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing read-only: got %v; want ErrNotExist", err)
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte("this is not a bbolt file, it is a text file that is long enough to be looked at; "+string(make([]byte, 8192))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ledger.Open(junk, nil); !errors.Is(err, ledger.ErrNotLedger) {
		t.Errorf("junk file: got %v; want ErrNotLedger", err)
	}
	path := filepath.Join(dir, "ledger.db")
	s, err := ledger.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = ledger.Open(path, &ledger.Options{ReadOnly: true, LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, ledger.ErrLocked) {
		t.Errorf("locked file: got %v; want ErrLocked", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("locked file: Open took %v; want it bounded by the lock timeout", d)
	}
}

func TestBlobs(t *testing.T) {
	s := ledgertest.Open(t, nil)
	if v, err := s.GetBlob("cp"); err != nil || v != nil {
		t.Fatalf("missing blob: got %q, %v", v, err)
	}
	if err := s.PutBlob(ctx, "cp", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.GetBlob("cp"); string(v) != "state" {
		t.Fatalf("blob: got %q; want state", v)
	}
	if err := s.PutBlob(ctx, "", nil); err == nil {
		t.Fatal("empty blob key: got nil error")
	}
}

func TestHotBackupWhileAppending(t *testing.T) {
	s := ledgertest.Open(t, nil)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Append(ctx, connected("u", "s")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	stopAppenders := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopAppenders() // also when the test fails early
	waitHead := func(above uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for s.Head().Seq <= above {
			if time.Now().After(deadline) {
				t.Fatalf("head stuck at %d; want past %d", s.Head().Seq, above)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitHead(100) // the backups copy a log that is being appended to
	backup := filepath.Join(t.TempDir(), "backup.db")
	var last uint64
	for i := 0; i < 3; i++ {
		var err error
		if last, err = s.Backup(ctx, backup); err != nil {
			t.Fatal(err)
		}
	}
	waitHead(last) // and appends go on after the last one
	stopAppenders()
	final := s.Head().Seq
	if last == 0 || last >= final {
		t.Fatalf("backup: got last seq %d with the head at %d; want a non-empty copy strictly behind the head", last, final)
	}
	b, err := ledger.Open(backup, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if b.Head().Seq != last {
		t.Fatalf("backup head: got %d; want %d", b.Head().Seq, last)
	}
	if n, err := b.Verify(ctx, 0, 0, nil); err != nil || n != last {
		t.Fatalf("verify backup: got %d records, %v; want %d and nil", n, err, last)
	}
	ledgertest.Check(t, b)
}

// TestNeverNoSync: a crash with NoSync can corrupt the file and lose
// acknowledged appends, so the store must never open bbolt with it (nor skip
// the syncs of file growth).
func TestNeverNoSync(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.Open(path, &ledger.Options{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, connected("u", "s")); err != nil {
		t.Fatal(err)
	}
	if noSync, noGrowSync := s.BoltNoSync(); noSync || noGrowSync {
		t.Errorf("read-write store: got NoSync %v, NoGrowSync %v; want both false", noSync, noGrowSync)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if noSync, _ := ro.BoltNoSync(); noSync {
		t.Error("read-only store: got NoSync true; want false")
	}
}

// TestUnencodableEventRefusedAlone: an event protobuf cannot encode (a
// string that is not UTF-8) is refused to its caller with ErrInvalidEvent
// before it reaches the writer, so the ledger goes on taking appends.
func TestUnencodableEventRefusedAlone(t *testing.T) {
	s := ledgertest.Open(t, nil)
	if _, err := s.Append(ctx, connected("\xff\xfe", "s")); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("non-UTF-8 user: got %v; want ErrInvalidEvent", err)
	}
	if _, err := s.Append(ctx, connected("u", "s")); err != nil {
		t.Fatalf("append after a refused event: %v", err)
	}
	if h := s.Head(); h.Seq != 1 {
		t.Fatalf("head: got seq %d; want 1", h.Seq)
	}
}

// TestScanCallbackHoldsNoReadTx: Scan's callback runs outside any read
// transaction, so a consumer that blocks (a slow gRPC client of an export)
// cannot stall the writer's remap; and every record still arrives once, in
// order, also across batch boundaries and with ErrStop.
func TestScanCallbackHoldsNoReadTx(t *testing.T) {
	s := ledgertest.Open(t, nil)
	ctx := context.Background()
	var evs []*eventpb.Event
	for i := range 1300 {
		evs = append(evs, ledgertest.Event(eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, fmt.Sprintf("u%d", i%5), fmt.Sprintf("s%d", i)))
	}
	if _, err := s.Append(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	err := s.Scan(ctx, 3, 1290, func(r *ledger.Record) error {
		if n := s.OpenReadTxs(); n != 0 {
			return fmt.Errorf("callback for seq %d runs with %d read transactions open", r.Seq, n)
		}
		seqs = append(seqs, r.Seq)
		if r.Seq == 1200 {
			return ledger.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 1198 || seqs[0] != 3 || seqs[len(seqs)-1] != 1200 {
		t.Fatalf("got %d records, %d..%d; want 3..1200", len(seqs), seqs[0], seqs[len(seqs)-1])
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seq %d after %d", seqs[i], seqs[i-1])
		}
	}
	n := 0
	if err := s.Scan(ctx, 0, 0, func(*ledger.Record) error { n++; return nil }); err != nil || n != 1300 {
		t.Fatalf("full scan: %d records, %v; want 1300", n, err)
	}
}

// TestEveryCallAfterCloseIsErrClosed: errors.go promises ErrClosed from
// every call after Close, reads included (bbolt itself says "database not
// open") and those a cache in memory could answer.
func TestEveryCallAfterCloseIsErrClosed(t *testing.T) {
	s, err := ledger.Open(filepath.Join(t.TempDir(), "ledger.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, connected("u", "s")); err != nil {
		t.Fatal(err)
	}
	// A group that subscribed has a cursor in memory, which GroupOffset
	// used to answer from after Close.
	member := ledger.NewSubscriber(s, ledger.SubscriberConfig{ConsumerGroup: "member"})
	defer member.Close()
	if _, err := member.Subscribe(ctx, ledger.EventsTopic); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	each := func(*ledger.Record) error { return nil }
	calls := map[string]func() error{
		"Append":  func() error { _, err := s.Append(ctx, connected("u", "s")); return err },
		"Get":     func() error { _, err := s.Get(1); return err },
		"Scan":    func() error { return s.Scan(ctx, 0, 0, each) },
		"ScanRaw": func() error { return s.ScanRaw(ctx, 0, 0, func(*ledger.RawRecord) error { return nil }) },
		"ScanTime": func() error {
			return s.ScanTime(ctx, time.Unix(1, 0), time.Time{}, each)
		},
		"SeqAtTime": func() error { _, err := s.SeqAtTime(time.Unix(1, 0)); return err },
		"ByUser":    func() error { return s.ByUser(ctx, "u", 0, 0, each) },
		"BySession": func() error { return s.BySession(ctx, "s", 0, 0, each) },
		"ByTopic":   func() error { return s.ByTopic(ctx, ledger.EventsTopic, 0, 0, each) },
		"Verify":    func() error { _, err := s.Verify(ctx, 0, 0, nil); return err },
		"Verify from past the head": func() error {
			_, err := s.Verify(ctx, 5, 0, nil)
			return err
		},
		"Backup": func() error {
			_, err := s.Backup(ctx, filepath.Join(t.TempDir(), "b.db"))
			return err
		},
		"BackupTo":    func() error { _, err := s.BackupTo(ctx, io.Discard); return err },
		"GetBlob":     func() error { _, err := s.GetBlob("k"); return err },
		"LastBlob":    func() error { _, _, err := s.LastBlob("", "z"); return err },
		"PutBlob":     func() error { return s.PutBlob(ctx, "k", nil) },
		"GroupOffset": func() error { _, err := s.GroupOffset("t", "g"); return err },
		"GroupOffset of a subscribed group": func() error {
			_, err := s.GroupOffset(ledger.EventsTopic, "member")
			return err
		},
		"Subscribe": func() error {
			sub := ledger.NewSubscriber(s, ledger.SubscriberConfig{})
			defer sub.Close()
			_, err := sub.Subscribe(ctx, "t")
			return err
		},
		"Err": func() error { return s.Err() },
	}
	for name, call := range calls {
		if err := call(); !errors.Is(err, ledger.ErrClosed) {
			t.Errorf("%s after Close: got %v; want ErrClosed", name, err)
		}
	}
}

// TestOnCommitSeesEveryCommit: the OnCommit hook is called once per
// transaction the writer commits, records and all: the commits and
// records Stats counts, a commit that carried only a blob with 0 records.
func TestOnCommitSeesEveryCommit(t *testing.T) {
	var mu sync.Mutex
	var calls, records, zero int
	var slowest time.Duration
	s := ledgertest.Open(t, &ledger.Options{OnCommit: func(took time.Duration, n int) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		records += n
		if n == 0 {
			zero++
		}
		slowest = max(slowest, took)
	}})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 25 {
				if _, err := s.Append(ctx, connected("u", fmt.Sprintf("s%d-%d", i, j)), connected("v", fmt.Sprintf("t%d-%d", i, j))); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.PutBlob(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	if uint64(calls) != st.Commits || uint64(records) != st.Records || records != 400 {
		t.Fatalf("OnCommit saw %d commits of %d records; Stats: %d commits of %d records; want both 400 records in the same commits", calls, records, st.Commits, st.Records)
	}
	if zero != 1 || slowest <= 0 {
		t.Fatalf("OnCommit saw %d commits without records (want 1: the blob's) and a slowest of %s (want > 0)", zero, slowest)
	}
}
