package main

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/sessionledger/sessionledger/audit/audittest"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// twoBans writes a ledger: uma connects (1) and is banned with no expiry
// (2); vic connects (3) and is notified (4); uma is notified (5) and
// banned for an hour (6), which changes nothing; uma leaves (7). Then it
// cuts the record at damaged short, so it no longer decodes.
func twoBans(t *testing.T, damaged uint64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ledger.db")
	at := audittest.Start
	st, err := ledger.Open(path, &ledger.Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	ban := func(actor string, until time.Time) *eventpb.Event {
		b := &eventpb.UserBanned{}
		if !until.IsZero() {
			b.UntilUnixNano = until.UnixNano()
		}
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_USER_BANNED, User: "uma", Actor: actor, Body: &eventpb.Event_UserBanned{UserBanned: b}}
	}
	notify := func(user string) *eventpb.Event {
		return &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_NOTIFICATION_SENT, User: user, Actor: "ops",
			Body: &eventpb.Event_NotificationSent{NotificationSent: &eventpb.NotificationSent{Target: eventpb.NotificationTarget_NOTIFICATION_TARGET_USER, Topic: "news"}}}
	}
	conn := &eventpb.Event{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "uma", Device: "desk", Session: "s-uma-1",
		Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}}
	for i, ev := range []*eventpb.Event{
		conn,
		ban("ops-a", time.Time{}),
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED, User: "vic", Device: "phone", Session: "s-vic-1", Body: &eventpb.Event_SessionConnected{SessionConnected: &eventpb.SessionConnected{}}},
		notify("vic"),
		notify("uma"),
		ban("ops-b", audittest.Start.Add(6*time.Minute+time.Hour)),
		{Type: eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED, User: "uma", Device: "desk", Session: "s-uma-1",
			Body: &eventpb.Event_SessionDisconnected{SessionDisconnected: &eventpb.SessionDisconnected{Cause: eventpb.DisconnectCause_DISCONNECT_CAUSE_CLIENT_CLOSED}}},
	} {
		at = audittest.Start.Add(time.Duration(i) * time.Minute)
		if _, err := st.Append(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	k := binary.BigEndian.AppendUint64(nil, damaged)
	if err := db.Update(func(tx *bolt.Tx) error {
		log := tx.Bucket([]byte("log"))
		return log.Put(k, append([]byte(nil), log.Get(k)[:10]...))
	}); err != nil {
		t.Fatal(err)
	}
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
