package audit_test

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// nasty are strings that exercise JSON and CSV escaping.
var nasty = []string{"", "plain", "with space", " leading", "\tleading tab", "com,ma", `quo"te`, "new\nline", "cr\rlf", `\.`,
	"<html>&", "é ü 日本", "\u2028", "\u00a0nbsp-leading", "ops-olga", "node-1"}

// randomEvent returns an event of a random type with every field drawn
// from nasty, so that each body type and detail appears.
func randomEvent(rng *rand.Rand) *eventpb.Event {
	s := func() string { return nasty[rng.IntN(len(nasty))] }
	n := func() int64 { return rng.Int64N(3) * rng.Int64N(1<<40) }
	ev := &eventpb.Event{Type: eventpb.EventType(1 + rng.IntN(9)), User: s(), Device: s(), Session: s(), Node: s(), Actor: s(), Reason: s()}
	var list []string
	for range rng.IntN(3) {
		list = append(list, s())
	}
	switch rng.IntN(9) {
	case 0:
		ev.Body = &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{RemoteAddr: s(), HeartbeatMs: n(), Supersedes: list}}
	case 1:
		ev.Body = &eventpb.Event_SessionReconnected{SessionReconnected: &eventpb.SessionReconnected{PreviousSession: s(), LastAckedSeq: uint64(n()), RemoteAddr: s(), HeartbeatMs: n(), Supersedes: list}}
	case 2:
		ev.Body = &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget(rng.IntN(5)), Topic: s(), Payload: []byte(s())}}
	case 3:
		ev.Body = &eventpb.Event_KickRequested{KickRequested: &eventpb.KickRequested{Target: eventpb.KickTarget(rng.IntN(5)), Mode: eventpb.KickMode(rng.IntN(4)), Reconnect: eventpb.Reconnect(rng.IntN(5)), ReconnectAfterMs: n()}}
	case 4:
		ev.Body = &eventpb.Event_UserBanned{UserBanned: &eventpb.UserBanned{UntilUnixNano: n()}}
	case 5:
		ev.Body = &eventpb.Event_UserUnbanned{UserUnbanned: &eventpb.UserUnbanned{}}
	case 6:
		id := make([]byte, []int{0, 16, 5}[rng.IntN(3)])
		for i := range id {
			id[i] = byte(rng.IntN(256))
		}
		ev.Body = &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause(rng.IntN(10)), CauseEventId: id, SupersededBy: s(), Reconnect: eventpb.Reconnect(rng.IntN(5)), ReconnectAfterMs: n()}}
	case 7:
		ev.Body = &eventpb.Event_ConnectRejected{ConnectRejected: &eventpb.ConnectRejected{Code: s(), Count: uint32(rng.IntN(1000)), RemoteAddr: s()}}
	}
	return ev
}

// setValue replaces the stored value of seq, bypassing the ledger.
func setValue(t *testing.T, db *bolt.DB, seq uint64, fn func(v []byte) []byte) {
	t.Helper()
	if err := db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("log"))
		k := binary.BigEndian.AppendUint64(nil, seq)
		return b.Put(k, fn(slices.Clone(b.Get(k))))
	}); err != nil {
		t.Fatal(err)
	}
}

// withEvent returns the record value v with its event bytes replaced by
// ev, the envelope otherwise unchanged (and still canonical: the event is
// its last field).
func withEvent(v, ev []byte) []byte {
	out := slices.Clone(v[:33])
	b := v[33:]
	for len(b) > 0 {
		num, _, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, protowire.BytesType, b[n:])
		if num == 1 || num == 3 {
			m = protowire.ConsumeFieldValue(num, protowire.VarintType, b[n:])
		}
		if num != 8 {
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	out = protowire.AppendTag(out, 8, protowire.BytesType)
	return protowire.AppendBytes(out, ev)
}

// eventOf returns the event bytes of the record value v.
func eventOf(v []byte) []byte {
	b := v[33:]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if num == 8 {
			x, _ := protowire.ConsumeBytes(b[n:])
			return x
		}
		b = b[n+m:]
	}
	return nil
}

// reversed re-encodes the fields of an encoded message in reverse order:
// the same message, in an encoding the fast decoder leaves to proto.
func reversed(b []byte) []byte {
	var fields [][]byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		fields = append(fields, b[:n+m])
		b = b[n+m:]
	}
	var out []byte
	for i := len(fields) - 1; i >= 0; i-- {
		out = append(out, fields[i]...)
	}
	return out
}

// exportLedger builds a ledger of n random events, then damages it: seq 9
// is garbage, seq 10's event has invalid UTF-8, seq 11's event is encoded
// in reverse field order and seq 12's carries an unknown field.
func exportLedger(t *testing.T, n int) *audit.Engine {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	st, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { at = at.Add(time.Second); return at }})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var evs []*eventpb.Event
	for range n {
		evs = append(evs, randomEvent(rng))
	}
	if _, err := st.Append(ctxT(t), evs...); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	setValue(t, db, 9, func([]byte) []byte { return []byte("garbage") })
	setValue(t, db, 10, func(v []byte) []byte {
		return withEvent(v, protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), []byte("bad \xff")))
	})
	setValue(t, db, 11, func(v []byte) []byte { return withEvent(v, reversed(eventOf(v))) })
	setValue(t, db, 12, func(v []byte) []byte {
		return withEvent(v, protowire.AppendVarint(protowire.AppendTag(eventOf(v), 99, protowire.VarintType), 5))
	})
	db.Close()
	st, err = ledger.Open(path, &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return audit.NewEngine(st)
}

// formatEvents is export as auditq wrote it before Export: each record
// Events delivers, through AppendJSON or encoding/csv.
func formatEvents(t *testing.T, eng *audit.Engine, f audit.Filter, format string, loc *time.Location) ([]byte, error) {
	var out bytes.Buffer
	var err error
	if format == audit.FormatJSONL {
		var buf []byte
		err = eng.Events(ctxT(t), f, false, func(r *ledger.Record) error {
			buf = append(audit.AppendJSON(buf[:0], r, loc), '\n')
			out.Write(buf)
			return nil
		})
	} else {
		c := csv.NewWriter(&out)
		c.Write(audit.CSVHeader)
		var row []string
		err = eng.Events(ctxT(t), f, false, func(r *ledger.Record) error {
			row, err = audit.WriteCSV(c, row, r, loc)
			return err
		})
		c.Flush()
	}
	return out.Bytes(), err
}

// TestExportMatchesEvents: Export writes byte for byte what formatting the
// records of Events gives, in both formats, for filters that scan and that
// use an index, windows, limits, a time zone, every body type, strings
// that need escaping, output larger than one flush and damaged records
// (skipped and named alike).
func TestExportMatchesEvents(t *testing.T) {
	eng := exportLedger(t, 6000)
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		berlin = time.FixedZone("UTC+1", 3600)
	}
	filters := []audit.Filter{
		{},
		{Limit: 1}, {Limit: 5000},
		{Since: start.Add(100 * time.Second), Until: start.Add(4500 * time.Second)},
		{Since: start.Add(11 * time.Second)},
		{Until: start.Add(12 * time.Second)},
		{Actor: "ops-olga"}, {Device: " leading", Limit: 40},
		{Types: []eventpb.EventType{eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, eventpb.EventType(9)}},
		{User: "plain"}, {Session: `quo"te`, Since: start.Add(300 * time.Second)}, {User: "com,ma", Limit: 3},
	}
	for _, f := range filters {
		for _, format := range []string{audit.FormatJSONL, audit.FormatCSV} {
			for _, loc := range []*time.Location{time.UTC, berlin} {
				name := fmt.Sprintf("%s %s %+v", format, loc, f)
				want, wantErr := formatEvents(t, eng, f, format, loc)
				var got bytes.Buffer
				gotErr := eng.Export(ctxT(t), &got, f, format, loc)
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("%s: output differs at byte %d (got %d bytes; want %d)", name, diffAt(got.Bytes(), want), got.Len(), len(want))
				}
				var gce, wce *audit.CorruptError
				if errors.As(gotErr, &gce) != errors.As(wantErr, &wce) || (gce != nil && !slices.Equal(gce.Seqs, wce.Seqs)) ||
					(gce == nil && (gotErr == nil) != (wantErr == nil)) {
					t.Errorf("%s: error %v; want %v", name, gotErr, wantErr)
				}
				if gce != nil && !errors.Is(gotErr, ledger.ErrCorrupt) {
					t.Errorf("%s: %v is not ErrCorrupt", name, gotErr)
				}
			}
		}
	}
	var ce *audit.CorruptError
	if err := eng.Export(ctxT(t), &bytes.Buffer{}, audit.Filter{}, audit.FormatJSONL, nil); !errors.As(err, &ce) || !slices.Equal(ce.Seqs, []uint64{9, 10}) {
		t.Errorf("full export: error %v; want seqs 9 and 10 skipped", err)
	}
	if err := eng.Export(ctxT(t), &bytes.Buffer{}, audit.Filter{}, "xml", nil); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("format xml: error %v; want ErrInvalid", err)
	}
}

func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// failWriter fails every write after the first.
type failWriter struct{ n int }

func (w *failWriter) Write(p []byte) (int, error) {
	if w.n++; w.n > 1 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestExportWriteError: a failed write ends the export with its error.
func TestExportWriteError(t *testing.T) {
	eng := exportLedger(t, 6000)
	if err := eng.Export(ctxT(t), &failWriter{}, audit.Filter{}, audit.FormatJSONL, nil); err == nil || err.Error() != "disk full" {
		t.Fatalf("error %v; want disk full", err)
	}
}
