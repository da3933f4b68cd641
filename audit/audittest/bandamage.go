package audittest

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// BanDamage writes a small ledger in a new temporary folder and returns
// its path: from Start, a record a minute, uma connects (1) and is banned
// with no expiry (2); vic connects (3) and is notified (4); uma is
// notified (5) and banned for an hour (6), which changes nothing (the ban
// in force ends later); uma leaves (7). No snapshots: a state rebuilt at
// seq 6 replays every record before it. Cut seq 4 (another user's) or 5
// (uma's) with CutShort to test how the sentence of seq 6 meets damage.
func BanDamage(tb testing.TB) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "ledger.db")
	c := &clock{t: Start}
	st, err := ledger.Open(path, &ledger.Options{Now: c.now})
	if err != nil {
		tb.Fatal(err)
	}
	const node = "node-1"
	ban := func(actor, reason string, until time.Time) *eventpb.Event {
		e := ev(eventpb.EventType_EVENT_TYPE_USER_BANNED, "uma", "", "", node, actor, reason)
		b := &eventpb.UserBanned{}
		if !until.IsZero() {
			b.UntilUnixNano = until.UnixNano()
		}
		e.Body = &eventpb.Event_UserBanned{UserBanned: b}
		return e
	}
	notify := func(user string) *eventpb.Event {
		e := ev(eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, user, "", "", node, "ops", "")
		e.Body = &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{
			Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "news", Payload: []byte(`{"n":1}`)}}
		return e
	}
	for i, e := range []*eventpb.Event{
		connected("uma", "desk", "s-uma-1", node, ""),
		ban("ops-a", "first strike", time.Time{}),
		connected("vic", "phone", "s-vic-1", node, ""),
		notify("vic"),
		notify("uma"),
		ban("ops-b", "second strike", Start.Add(6*time.Minute+time.Hour)),
		disconnected("uma", "desk", "s-uma-1", node, "uma", "", &eventpb.SessionDisconnected{Cause: cClosed, Reconnect: rAllowed}),
	} {
		c.t = Start.Add(time.Duration(i) * time.Minute)
		if _, err := st.Append(context.Background(), e); err != nil {
			tb.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// CutShort makes the record at seq in the closed ledger file at path
// undecodable: its stored value is cut to its first 10 bytes.
func CutShort(tb testing.TB, path string, seq uint64) {
	tb.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	k := binary.BigEndian.AppendUint64(nil, seq)
	if err := db.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		return log.Put(k, bytes.Clone(log.Get(k)[:10]))
	}); err != nil {
		tb.Fatal(err)
	}
}
