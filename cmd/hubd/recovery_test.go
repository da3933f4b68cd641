package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
	"github.com/sessionledger/sessionledger/projections"
)

// records reads every record of the ledger at data (hubd must have
// exited) and checks that the chain verifies.
func records(t *testing.T, data string) []*ledger.Record {
	t.Helper()
	store, err := ledger.Open(filepath.Join(data, "ledger.db"), &ledger.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Verify(context.Background(), 1, 0, nil); err != nil {
		t.Fatalf("ledger does not verify: %v", err)
	}
	var out []*ledger.Record
	if err := store.Scan(context.Background(), 1, 0, func(r *ledger.Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// sessionEvents returns the records about session id, in log order.
func sessionEvents(recs []*ledger.Record, id string) (connects, ends []*ledger.Record, resumes int) {
	for _, r := range recs {
		ev := r.Event
		switch {
		case ev.GetSession() == id && ev.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_CONNECTED:
			connects = append(connects, r)
		case ev.GetSession() == id && ev.GetType() == eventpb.EventType_EVENT_TYPE_SESSION_DISCONNECTED:
			ends = append(ends, r)
		case ev.GetSessionReconnected().GetPreviousSession() == id:
			resumes++
		}
	}
	return connects, ends, resumes
}

// adminOf returns an Admin client of p and a context carrying hubd's
// created admin token (actor "admin").
func adminOf(t *testing.T, p *proc) (hubpb.AdminClient, context.Context) {
	t.Helper()
	tok, err := hubapi.FirstAdminToken(filepath.Join(p.data, hubapi.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return hubpb.NewAdminClient(dialConn(t, p.grpc)), metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// TestKickHoldsAcrossACrash: a kick acknowledged before a crash must hold
// after it. The kicked client never reads, so its Disconnect cannot be
// sent and its session_disconnected waits (up to twice
// --graceful-timeout); hubd is SIGKILLed in that window, after the kick's
// reply and before the end was recorded. At the restart, crash recovery
// must record the end as the kick (cause, event id, actor, reason, advice)
// rather than as lost, and the client's saved resume secret must be
// refused with the kick's reason.
func TestKickHoldsAcrossACrash(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data)
	// Fixed 64 KiB windows (no BDP growth): the server can send this
	// client at most one window that it does not read.
	conn, err := grpc.NewClient(p.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, w := sessionOn(t, conn, "sk", "phone") // never reads again
	id := w.GetSessionId()
	admin, ctx := adminOf(t, p)
	// Four 60 KB notifications fill the window and the stream's write
	// quota: the session's loop then waits in Send for a client that
	// never reads. Eight leave no doubt.
	big := make([]byte, 60<<10)
	for range 8 {
		if _, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "bulk", Payload: big}); err != nil {
			t.Fatal(err)
		}
	}
	const reason = "chargeback\tfraud" // a tab: the refusal must carry the reason exactly
	rep, err := admin.Kick(ctx, &hubpb.KickRequest{User: "sk", Reason: reason, Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED})
	if err != nil {
		t.Fatal(err)
	}
	if rep.GetSessions() != 1 {
		t.Fatalf("kick addressed %d sessions; want 1", rep.GetSessions())
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited

	// The crash came between the kick and the session's end, or the test
	// proves nothing.
	recs := records(t, data)
	var kick *ledger.Record
	for _, r := range recs {
		if r.Seq == rep.GetSeq() {
			kick = r
		}
	}
	if kick == nil || kick.Event.GetType() != eventpb.EventType_EVENT_TYPE_KICK_REQUESTED || kick.ID.String() != rep.GetEventId() {
		t.Fatalf("record at the kick's seq %d: %v; want the kick %s", rep.GetSeq(), kick, rep.GetEventId())
	}
	if _, ends, _ := sessionEvents(recs, id); len(ends) != 0 {
		t.Fatalf("the session's end was recorded before the kill (%v): the crash did not fall between the kick and the end", ends[0].Event)
	}

	p = startHubd(t, data)
	// The kicked client comes back with its saved resume secret.
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := hubpb.NewHubClient(dialConn(t, p.grpc)).Connect(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&hubpb.ClientFrame{Frame: &hubpb.ClientFrame_Hello{Hello: &hubpb.Hello{User: "sk", Device: "phone",
		Resume: &hubpb.Resume{SessionId: id, Secret: w.GetResumeSecret()}}}}); err != nil {
		t.Fatal(err)
	}
	f, err := st.Recv()
	if err == nil {
		t.Fatalf("resume of the kicked session got %v; want it refused", f)
	}
	s := status.Convert(err)
	var rj *hubpb.Rejected
	for _, d := range s.Details() {
		if x, ok := d.(*hubpb.Rejected); ok {
			rj = x
		}
	}
	if s.Code() != codes.PermissionDenied || rj.GetReconnect() != hubpb.Reconnect_RECONNECT_NOT_ALLOWED || !strings.HasSuffix(rj.GetReason(), ": "+reason) {
		t.Fatalf("resume refused with %v (detail %v); want PermissionDenied, reconnect not allowed, with the kick's reason %q", s, rj, reason)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("hubd exited %d:\n%s", code, p.output())
	}

	recs = records(t, data)
	_, ends, resumes := sessionEvents(recs, id)
	if len(ends) != 1 || resumes != 0 {
		t.Fatalf("session %s: %d ends, %d resumes; want one end and no resume", id, len(ends), resumes)
	}
	end := ends[0].Event
	d := end.GetSessionDisconnected()
	if d.GetCause() != eventpb.DisconnectCause_DISCONNECT_CAUSE_KICKED || !bytes.Equal(d.GetCauseEventId(), kick.ID[:]) ||
		end.GetActor() != "admin" || end.GetReason() != reason || d.GetReconnect() != eventpb.Reconnect_RECONNECT_NOT_ALLOWED ||
		end.GetNode() != "node-1" {
		t.Fatalf("recorded end: %v; want kicked by admin (event %s), reason %q, reconnect not allowed", end, kick.ID, reason)
	}
}

// editLedger edits the bbolt file of the ledger at data (hubd stopped).
func editLedger(t *testing.T, data string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(data, "ledger.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// projectionsOffsetKey is the offsets-bucket key of hubd's projections
// (consumer group "projections" on the events topic).
func projectionsOffsetKey() []byte {
	return append(binary.AppendUvarint(nil, uint64(len(ledger.EventsTopic))), ledger.EventsTopic+"projections"...)
}

// logLine reports whether p logged a JSON line with msg and every field in
// want (compared as text).
func logLine(p *proc, msg string, want map[string]string) bool {
	for _, line := range strings.Split(p.output(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			ok = ok && fmt.Sprint(l[k]) == v
		}
		if ok {
			return true
		}
	}
	return false
}

// metricValue returns the value of series in p's /metrics.
func metricValue(t *testing.T, p *proc, series string) string {
	t.Helper()
	res, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// TestDamagedOffsetDoesNotStall: the projections' stored consumer-group
// offset edited past the head used to stop them applying anything new:
// every connect and kick hung until its deadline, health green. hubd must
// clamp it with a warning naming the offset and the head, count it, and
// serve.
func TestDamagedOffsetDoesNotStall(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data)
	session(t, p.grpc, "before", "d")
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	head := uint64(len(records(t, data)))
	editLedger(t, data, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("offsets")).Put(projectionsOffsetKey(), binary.BigEndian.AppendUint64(nil, head+100))
	})

	p = startHubd(t, data)
	_, w := session(t, p.grpc, "after", "d") // hung until its deadline
	admin, ctx := adminOf(t, p)
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rep, err := admin.Kick(kctx, &hubpb.KickRequest{SessionId: w.GetSessionId(), Reason: "check"}); err != nil || rep.GetSessions() != 1 {
		t.Fatalf("kick after the restart: %v, %v; want one session kicked", rep, err)
	}
	if !logLine(p, "ledger: consumer-group offset is past the head of the log (a damaged, edited or truncated file); the group starts after the head",
		map[string]string{"group": "projections", "offset": fmt.Sprint(head + 100), "head": fmt.Sprint(head), "clamped_to": fmt.Sprint(head + 1)}) {
		t.Errorf("no warning naming the offset %d and the head %d:\n%s", head+100, head, p.output())
	}
	if got := metricValue(t, p, "sessionledger_ledger_offsets_clamped_total"); got != "1" {
		t.Errorf("sessionledger_ledger_offsets_clamped_total = %q; want 1", got)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
}

// TestTruncatedTailStarts: with the newest records of the ledger gone, the
// projections' checkpoint and consumer offset point past the head. hubd
// used to hang at start-up without a word: its recovery recorded lost ends
// and waited for them forever.
//
// A plain tail truncation (the log bucket alone) is caught by the Merkle
// tree, which still covers the removed records: hubd refuses to start, at
// once, saying what happened and what to do. A truncation that also took
// the tree away (the file made to look like a format v2 one, whose tree
// hubd builds at open) must be reported (offset and checkpoint logged with
// the seqs, counted), and hubd must start and end the sessions the shorter
// log shows live.
func TestTruncatedTailStarts(t *testing.T) {
	data := t.TempDir()
	p := startHubd(t, data)
	_, a := session(t, p.grpc, "ann", "d")
	_, b := session(t, p.grpc, "bob", "d")
	admin, ctx := adminOf(t, p)
	for range 12 {
		if _, err := admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	// A second run ends ann and bob as lost, checkpoints, and stops
	// cleanly: checkpoint and offset at its head.
	p = startHubd(t, data)
	session(t, p.grpc, "cy", "d")
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	head := uint64(len(records(t, data))) // 2 connects, 12 notifications, 2 lost ends, cy's connect and end
	if head != 18 {
		t.Fatalf("%d records; want 18", head)
	}
	// Where the checkpoint and the offset are (cy's end may have been
	// recorded after the last one was applied).
	var offset, checkpoint uint64
	editLedger(t, data, func(tx *bolt.Tx) error {
		offset = binary.BigEndian.Uint64(tx.Bucket([]byte("offsets")).Get(projectionsOffsetKey()))
		st, err := projections.UnmarshalState(tx.Bucket([]byte("blobs")).Get([]byte(projections.CheckpointKey)))
		if err != nil {
			return err
		}
		checkpoint = st.Seq()
		return nil
	})
	if offset <= head-9 || checkpoint <= head-10 {
		t.Fatalf("offset %d, checkpoint %d: want both past the head after the truncation", offset, checkpoint)
	}
	editLedger(t, data, func(tx *bolt.Tx) error {
		for seq := head - 9; seq <= head; seq++ {
			if err := tx.Bucket([]byte("log")).Delete(binary.BigEndian.AppendUint64(nil, seq)); err != nil {
				return err
			}
		}
		return nil
	})

	// The tree still covers the removed records: refused, at once.
	p = launch(t, data)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("hubd did not refuse a truncated ledger within 20s:\n%s", p.output())
	}
	if out := p.output(); p.code != 1 || !strings.Contains(out, "records after it were removed") || !strings.Contains(out, "restore the ledger from a backup") {
		t.Fatalf("hubd on a truncated ledger: exit %d:\n%s\nwant exit 1 naming the removed records and what to do", p.code, out)
	}

	// The tree removed too, as if the file were a format v2 one.
	editLedger(t, data, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("tree")); err != nil {
			return err
		}
		return tx.Bucket([]byte("meta")).Put([]byte("magic"), []byte("sessionledger/ledger/v2"))
	})
	// A v2 file has no log id yet (the upgrade names one), so no
	// checkpoint key either.
	if err := os.Remove(filepath.Join(data, "checkpoint.key")); err != nil {
		t.Fatal(err)
	}
	p = startHubd(t, data) // used to hang here
	for _, l := range []struct {
		msg  string
		want map[string]string
	}{
		{"ledger: consumer-group offset is past the head of the log (a damaged, edited or truncated file); the group starts after the head",
			map[string]string{"offset": fmt.Sprint(offset), "head": "8", "clamped_to": "9"}},
		{"projections checkpoint is past the head of the log (a damaged, edited or truncated ledger); rebuilding from the log",
			map[string]string{"checkpoint_seq": fmt.Sprint(checkpoint), "head": "8"}},
	} {
		if !logLine(p, l.msg, l.want) {
			t.Errorf("no log line %q with %v:\n%s", l.msg, l.want, p.output())
		}
	}
	if got := metricValue(t, p, "sessionledger_projections_ahead_of_head_total"); got != "1" {
		t.Errorf("sessionledger_projections_ahead_of_head_total = %q; want 1", got)
	}
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
	got := ends(t, data)
	for _, id := range []string{a.GetSessionId(), b.GetSessionId()} {
		if got[id] != eventpb.DisconnectCause_DISCONNECT_CAUSE_LOST {
			t.Errorf("session %s: end cause %v; want LOST", id, got[id])
		}
	}
}

// TestStreamsPerConnectionAreBounded: one connection may hold at most
// --max-streams-per-conn streams; gRPC's default is unlimited, and 2,000
// streams that never said Hello on one connection cost 6,000 goroutines
// until the Hello timeout. A stream beyond the bound waits for one to end.
func TestStreamsPerConnectionAreBounded(t *testing.T) {
	p := startHubd(t, t.TempDir(), "--max-streams-per-conn", "4")
	conn := dialConn(t, p.grpc)
	hub := hubpb.NewHubClient(conn)
	cancels := make([]context.CancelFunc, 4)
	for i := range cancels {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		defer cancel()
		if _, err := hub.Connect(ctx); err != nil { // no Hello
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := hub.Connect(short); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a fifth stream on the connection: %v; want it to wait (DeadlineExceeded)", err)
	}
	cancels[0]()
	sessionOn(t, conn, "fifth", "d") // a stream ended: this one opens and is served
	if code := p.signal(syscall.SIGTERM); code != 0 {
		t.Fatalf("exit %d:\n%s", code, p.output())
	}
}
