package hub_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/sessionledger/sessionledger/hub"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// TestAdminRefusesOutOfRange: durations that would overflow (a ban
// "until" 1734, a negative reconnect-after) and names longer than
// MaxNameBytes are refused with InvalidArgument before anything is
// recorded; the largest allowed values are recorded as asked.
func TestAdminRefusesOutOfRange(t *testing.T) {
	now := time.Now()
	e := newEnv(t, hub.Config{Now: func() time.Time { return now }})
	ctx := adminCtx(ctxT(t))
	long := strings.Repeat("n", hubapi.MaxNameBytes+1)
	for _, c := range []struct {
		name string
		call func() error
		want string
	}{
		{"ban for 2562047h", func() error {
			_, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "u", Reason: "r", DurationMs: (2562047 * time.Hour).Milliseconds()})
			return err
		}, "longer than the maximum"},
		{"ban for max int64 ms", func() error {
			_, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "u", Reason: "r", DurationMs: math.MaxInt64})
			return err
		}, "longer than the maximum"},
		{"ban until 2300", func() error {
			_, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "u", Reason: "r", UntilUnixNano: math.MaxInt64})
			return err
		}, "from now"},
		{"kick reconnect after MaxInt64/1000 ms", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Reason: "r", ReconnectAfterMs: math.MaxInt64 / 1000})
			return err
		}, "longer than the maximum"},
		{"kick long user", func() error { _, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: long, Reason: "r"}); return err }, "user is 257 bytes"},
		{"kick long device", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Device: long, Reason: "r"})
			return err
		}, "device is 257 bytes"},
		{"kick long session", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{SessionId: long, Reason: "r"})
			return err
		}, "session_id is 257"},
		{"kick long reason", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Reason: strings.Repeat("r", hubapi.MaxReasonBytes+1)})
			return err
		}, "reason is 1025 bytes"},
		{"ban long user", func() error { _, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: long, Reason: "r"}); return err }, "user is 257"},
		{"unban long user", func() error { _, err := e.admin.Unban(ctx, &hubpb.UnbanRequest{User: long, Reason: "r"}); return err }, "user is 257"},
		{"notify long topic", func() error {
			_, err := e.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: long})
			return err
		}, "topic is 257"},
		{"notify long user", func() error {
			_, err := e.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: long, Topic: "t"})
			return err
		}, "user is 257"},
		{"notify long session", func() error {
			_, err := e.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_SESSION, SessionId: long, Topic: "t"})
			return err
		}, "session_id is 257"},
		{"kick not allowed with a delay", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Reason: "r", Reconnect: hubpb.Reconnect_RECONNECT_NOT_ALLOWED, ReconnectAfterMs: 60000})
			return err
		}, "reconnect_after_ms 60000 goes only with reconnect after"},
		{"kick allowed with a delay", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Reason: "r", Reconnect: hubpb.Reconnect_RECONNECT_ALLOWED, ReconnectAfterMs: 60000})
			return err
		}, "goes only with reconnect after"},
		{"kick user with a control character", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u\033[2J", Reason: "r"})
			return err
		}, "user holds U+001B at byte 1"},
		{"kick device with a line break", func() error {
			_, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: "u", Device: "d\nFAKE", Reason: "r"})
			return err
		}, "device holds U+000A"},
		{"ban user with a bidi override", func() error {
			_, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "u\u202egnp.exe", Reason: "r"})
			return err
		}, "user holds U+202E"},
		{"notify topic with a line separator", func() error {
			_, err := e.admin.Notify(ctx, &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_ALL, Topic: "t\u2028x"})
			return err
		}, "topic holds U+2028"},
		{"list long node", func() error { _, err := e.admin.ListSessions(ctx, &hubpb.ListSessionsRequest{Node: long}); return err }, "node is 257"},
		{"get long session", func() error {
			_, err := e.admin.GetSession(ctx, &hubpb.GetSessionRequest{SessionId: long})
			return err
		}, "session_id is 257"},
	} {
		err := c.call()
		if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want InvalidArgument saying %q", c.name, err, c.want)
		}
	}
	if h := e.store.Head().Seq; h != 0 {
		t.Fatalf("refused admin calls recorded %d events", h)
	}
	// The limits themselves are fine.
	if _, err := e.admin.Ban(ctx, &hubpb.BanRequest{User: "century", Reason: "r", DurationMs: hubapi.MaxBanDuration.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
	ban := e.events(1)[0].Event.GetUserBanned()
	if got, want := time.Unix(0, ban.GetUntilUnixNano()), now.Add(hubapi.MaxBanDuration); !got.Equal(want) {
		t.Fatalf("ban until %s; want %s", got, want)
	}
	if _, err := e.admin.Kick(ctx, &hubpb.KickRequest{User: strings.Repeat("n", hubapi.MaxNameBytes), Reason: "r", ReconnectAfterMs: hubapi.MaxReconnectAfter.Milliseconds()}); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyLargestPayload: a payload of MaxNotifyPayload with the longest
// names fits the default message size and is delivered whole; one byte
// more is refused by the hub (InvalidArgument), not by the transport.
func TestNotifyLargestPayload(t *testing.T) {
	e := newEnv(t, hub.Config{})
	user := strings.Repeat("u", hubapi.MaxNameBytes)
	c := e.mustDial(user, "d")
	payload := []byte(strings.Repeat("p", hubapi.MaxNotifyPayload))
	topic := strings.Repeat("t", hubapi.MaxNameBytes)
	rep, err := e.admin.Notify(adminCtx(ctxT(t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: user, Topic: topic, Payload: payload})
	if err != nil {
		t.Fatalf("notify with a %d-byte payload: %v", len(payload), err)
	}
	f, err := c.next()
	if err != nil || f.GetNotification().GetSeq() != rep.GetSeq() || len(f.GetNotification().GetPayload()) != hubapi.MaxNotifyPayload {
		t.Fatalf("delivered %v, %v; want the whole payload", len(f.GetNotification().GetPayload()), err)
	}
	_, err = e.admin.Notify(adminCtx(ctxT(t)), &hubpb.NotifyRequest{Target: hubpb.NotifyTarget_NOTIFY_TARGET_USER, User: user, Topic: topic, Payload: append(payload, 'x')})
	if codeOf(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at most 65536") {
		t.Fatalf("notify one byte over: %v; want InvalidArgument from the hub", err)
	}
}
