package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/internal/timearg"
)

// adminCall dials hubd and runs fn with an authenticated context.
func adminCall(g *globals, what string, fn func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error), out io.Writer, asJSON bool, human func(proto.Message) string) error {
	admin, ctx, done, err := g.admin()
	if err != nil {
		return err
	}
	defer done()
	res, err := fn(admin, ctx)
	if err != nil {
		return callError(what, err)
	}
	if asJSON {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(res)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, string(compactJSON(b)))
		return nil
	}
	fmt.Fprintln(out, human(res))
	return nil
}

// admin dials hubd and returns an Admin client, an authenticated context
// with the call timeout, and what to call when done.
func (g *globals) admin() (hubpb.AdminClient, context.Context, func(), error) {
	conn, err := g.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel, err := g.adminCtx()
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	return hubpb.NewAdminClient(conn), ctx, func() { cancel(); conn.Close() }, nil
}

// compactJSON removes the random spaces protojson puts in its output.
func compactJSON(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b
	}
	return out
}

func describeAction(verb string) func(proto.Message) string {
	return func(m proto.Message) string {
		r := m.(*hubpb.ActionReply)
		if b := r.GetBanInForce(); b.GetKept() {
			// A ban that ends no later than the one in force is recorded
			// and changes nothing: say so, and which ban stays.
			until := "with no expiry"
			if u := b.GetUntilUnixNano(); u != 0 {
				until = "until " + time.Unix(0, u).UTC().Format(time.RFC3339)
			}
			return fmt.Sprintf("ban recorded as event %s (seq %d) and changes nothing: the ban in force (event %s) ends later and was kept, %s", r.GetEventId(), r.GetSeq(), b.GetEventId(), until)
		}
		s := fmt.Sprintf("%s: event %s (seq %d), %d live session(s) addressed", verb, r.GetEventId(), r.GetSeq(), r.GetSessions())
		if r.GetSessions() == 0 && verb != "unbanned" {
			s += fmt.Sprintf(" (none was live; the %s is recorded)", map[string]string{"kicked": "kick", "banned": "ban", "notified": "notification", "revoked": "revocation"}[verb])
		}
		return s
	}
}

func newKick(g *globals) *cobra.Command {
	var (
		req            hubpb.KickRequest
		abort, noRecon bool
		after          time.Duration
		asJSON         bool
	)
	c := &cobra.Command{
		Use:   "kick (--session S | --user U [--device D] [--except-session S | --except-device D]) --reason R",
		Short: "End a session, a user's sessions, or a user's sessions on one device",
		Long: `kick records a kick_requested event (with you as the actor, from the admin
token) and returns once it is durable and applied; the targeted sessions then
receive Disconnect{kicked} and end, and each end is recorded.

Graceful by default (Disconnect frame, then the status); --abort closes the
client's connection at once. The client is told it may reconnect, unless
--no-reconnect or --reconnect-after.

"Log out everywhere else": with --user, --except-session S spares that one
session (it must be a live session of the user) and --except-device D
spares the user's sessions on that device; every other session ends.`,
		Example: `  hubctl kick --user alice --reason "password changed" --no-reconnect
  hubctl kick --user alice --except-session 01JD3M1Q4Z8X7W2V5T0R6P9N3K --reason "signed out elsewhere"
  hubctl kick --session 01JD3M1Q4Z8X7W2V5T0R6P9N3K --reason "stuck client" --abort
  hubctl kick --user bob --device tablet --reason "moved to phone" --reconnect-after 5m`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case req.SessionId == "" && req.User == "":
				return usageError{errors.New("kick: give --session or --user")}
			case req.SessionId != "" && (req.User != "" || req.Device != ""):
				return usageError{errors.New("kick: --session cannot go with --user or --device")}
			case (req.ExceptSession != "" || req.ExceptDevice != "") && req.User == "":
				return usageError{errors.New("kick: --except-session and --except-device go with --user (log the user out everywhere else)")}
			case req.ExceptSession != "" && req.ExceptDevice != "":
				return usageError{errors.New("kick: --except-session and --except-device exclude each other")}
			case req.ExceptDevice != "" && req.Device != "":
				return usageError{errors.New("kick: --except-device cannot go with --device")}
			case strings.TrimSpace(req.Reason) == "":
				return usageError{errors.New("kick: --reason is required (it is recorded for the audit)")}
			case noRecon && after > 0:
				return usageError{errors.New("kick: --no-reconnect and --reconnect-after exclude each other")}
			case after < 0 || (after > 0 && after < time.Millisecond):
				return usageError{errors.New("kick: --reconnect-after must be at least 1ms")}
			case after > hubapi.MaxReconnectAfter:
				return usageError{fmt.Errorf("kick: --reconnect-after %s is longer than the maximum %s (ban the user to keep them out longer)", after, hubapi.MaxReconnectAfter)}
			}
			req.Mode = hubpb.KickMode_KICK_MODE_GRACEFUL
			if abort {
				req.Mode = hubpb.KickMode_KICK_MODE_ABORT
			}
			req.Reconnect = hubpb.Reconnect_RECONNECT_ALLOWED
			if noRecon {
				req.Reconnect = hubpb.Reconnect_RECONNECT_NOT_ALLOWED
			} else if after > 0 {
				req.Reconnect, req.ReconnectAfterMs = hubpb.Reconnect_RECONNECT_AFTER, after.Milliseconds()
			}
			return adminCall(g, "kick", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Kick(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, describeAction("kicked"))
		},
	}
	f := c.Flags()
	f.StringVar(&req.SessionId, "session", "", "session id to kick")
	f.StringVar(&req.User, "user", "", "kick every session of this user")
	f.StringVar(&req.Device, "device", "", "with --user: only this device")
	f.StringVar(&req.ExceptSession, "except-session", "", "with --user: spare this live session of the user (log out everywhere else)")
	f.StringVar(&req.ExceptDevice, "except-device", "", "with --user: spare the user's sessions on this device")
	f.StringVar(&req.Reason, "reason", "", "why (recorded, and shown to the client)")
	f.BoolVar(&abort, "abort", false, "close the client's connection at once instead of a graceful Disconnect")
	f.BoolVar(&noRecon, "no-reconnect", false, "tell the client not to reconnect (resume is refused)")
	f.DurationVar(&after, "reconnect-after", 0, "tell the client to wait this long before reconnecting")
	f.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func newBan(g *globals) *cobra.Command {
	var (
		req    hubpb.BanRequest
		dur    time.Duration
		until  string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "ban --user U [--for DURATION | --until TIME] --reason R",
		Short: "Ban a user: end their sessions and refuse their connects until the ban ends",
		Long: `ban records a user_banned event; the user's live sessions end with cause
banned and new connects are refused with PermissionDenied (recorded as
connect_rejected) until the ban expires or is lifted with unban. Without
--for or --until the ban does not expire.

--until takes the times auditq takes: RFC3339, or a date or date-time
without a zone, read as UTC ("2026-12-06 16:00").

A ban during a ban keeps whichever ends later: a shorter ban is recorded
and changes nothing, and the reply says which ban stays in force.`,
		Example: `  hubctl ban --user mallory --for 24h --reason "spam"
  hubctl ban --user mallory --until 2026-12-01T00:00:00Z --reason "chargeback"
  hubctl ban --user mallory --until "2026-12-06 16:00" --reason "cool-down"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case req.User == "":
				return usageError{errors.New("ban: --user is required")}
			case strings.TrimSpace(req.Reason) == "":
				return usageError{errors.New("ban: --reason is required (it is recorded for the audit)")}
			case dur != 0 && until != "":
				return usageError{errors.New("ban: --for and --until exclude each other")}
			case dur < 0 || (dur > 0 && dur < time.Millisecond):
				// 0 ms on the wire means "no expiry".
				return usageError{errors.New("ban: --for must be at least 1ms (leave --for and --until out for a ban without expiry)")}
			case dur > hubapi.MaxBanDuration:
				return usageError{fmt.Errorf("ban: --for %s is longer than the maximum %s (leave --for and --until out for a ban without expiry)", dur, hubapi.MaxBanDuration)}
			}
			req.DurationMs = dur.Milliseconds()
			if until != "" {
				now := time.Now()
				t, err := timearg.Parse(until, now, time.UTC)
				if err != nil {
					return usageError{fmt.Errorf("ban: --until: %w", err)}
				}
				if !t.After(now) {
					return usageError{fmt.Errorf("ban: --until %s is in the past", until)}
				}
				// Checked before UnixNano, which overflows after 2262.
				if t.After(now.Add(hubapi.MaxBanDuration)) {
					return usageError{fmt.Errorf("ban: --until %s is more than %s from now (leave --for and --until out for a ban without expiry)", until, hubapi.MaxBanDuration)}
				}
				req.UntilUnixNano = t.UnixNano()
			}
			return adminCall(g, "ban", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Ban(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, describeAction("banned"))
		},
	}
	f := c.Flags()
	f.StringVar(&req.User, "user", "", "user to ban")
	f.DurationVar(&dur, "for", 0, "ban duration (e.g. 1h, 30m)")
	f.StringVar(&until, "until", "", "ban end: RFC3339, or a date or date-time in UTC (\"2026-12-06 16:00\")")
	f.StringVar(&req.Reason, "reason", "", "why (recorded, and shown to the client)")
	f.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func newUnban(g *globals) *cobra.Command {
	var (
		req    hubpb.UnbanRequest
		asJSON bool
	)
	c := &cobra.Command{
		Use:     "unban --user U --reason R",
		Short:   "Lift a user's ban",
		Example: `  hubctl unban --user mallory --reason "appeal accepted"`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.User == "" {
				return usageError{errors.New("unban: --user is required")}
			}
			if strings.TrimSpace(req.Reason) == "" {
				return usageError{errors.New("unban: --reason is required (it is recorded for the audit)")}
			}
			return adminCall(g, "unban", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Unban(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, describeAction("unbanned"))
		},
	}
	c.Flags().StringVar(&req.User, "user", "", "user to unban")
	c.Flags().StringVar(&req.Reason, "reason", "", "why (recorded)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func newDrain(g *globals) *cobra.Command {
	var (
		req    hubpb.DrainRequest
		window time.Duration
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "drain [--node N] --reason R [--window D]",
		Short: "Move a node's sessions to the other nodes (before an upgrade)",
		Long: `drain records a node_drained event for a node (the one --addr reaches, or
--node, any alive node of the cluster): every session live on it is told to
reconnect elsewhere after a delay spread over --window (each end is recorded
with cause drained), and the node refuses new connects and reports
NOT_SERVING until it restarts. Then stop it (SIGTERM), upgrade it and start
it again. SIGTERM alone also moves the sessions (cause server_shutdown).`,
		Example: `  hubctl --addr 127.0.0.1:7070 drain --node node-b --reason "upgrade to 1.4" --window 10s`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if strings.TrimSpace(req.Reason) == "" {
				return usageError{errors.New("drain: --reason is required (it is recorded for the audit)")}
			}
			if window < 0 || (window > 0 && window < time.Millisecond) {
				return usageError{fmt.Errorf("drain: --window %s: want a positive duration (default 5s)", window)}
			}
			req.WindowMs = window.Milliseconds()
			return adminCall(g, "drain", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Drain(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, func(m proto.Message) string {
				r := m.(*hubpb.ActionReply)
				return fmt.Sprintf("drained: event %s (seq %d), %d live session(s) told to reconnect elsewhere", r.GetEventId(), r.GetSeq(), r.GetSessions())
			})
		},
	}
	c.Flags().StringVar(&req.Node, "node", "", "the node to drain (default: the one --addr reaches)")
	c.Flags().StringVar(&req.Reason, "reason", "", "why (recorded)")
	c.Flags().DurationVar(&window, "window", 0, "spread the sessions' reconnects over this long (default 5s, at most 1h)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func newNotify(g *globals) *cobra.Command {
	var (
		req     hubpb.NotifyRequest
		all     bool
		payload string
		asJSON  bool
	)
	c := &cobra.Command{
		Use:   "notify (--session S | --user U | --all) --topic T --payload JSON",
		Short: "Send a notification to a session, a user's sessions, or everyone",
		Long: `notify records a notification_sent event; live sessions it addresses receive
it as a Notification frame, and a session that resumes later gets the ones
it missed. The payload is --payload (JSON); --data is hubd's data directory,
as for every command. (Before this release the payload was notify's --data:
that spelling is refused with a message saying so.)`,
		Example: `  hubctl notify --user alice --topic chat --payload '{"text":"hello"}'
  hubctl --data /var/lib/hubd notify --all --topic maintenance --payload '{"in":"10m"}'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n := 0
			for _, set := range []bool{req.SessionId != "", req.User != "", all} {
				if set {
					n++
				}
			}
			switch {
			case n != 1:
				return usageError{errors.New("notify: give exactly one of --session, --user, --all")}
			case req.Topic == "":
				return usageError{errors.New("notify: --topic is required")}
			case !cmd.Flags().Changed("payload") && oldPayloadSpelling(cmd):
				return usageError{fmt.Errorf("notify: --data %q looks like a payload: the payload is --payload now, and --data names hubd's data directory (give it to every command the same way)", g.dataDir)}
			case !cmd.Flags().Changed("payload"):
				return usageError{errors.New("notify: --payload is required (JSON, e.g. --payload '{}')")}
			case !json.Valid([]byte(payload)):
				return usageError{fmt.Errorf("notify: --payload %q is not valid JSON", payload)}
			}
			switch {
			case req.SessionId != "":
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_SESSION
			case req.User != "":
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_USER
			default:
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_ALL
			}
			req.Payload = []byte(payload)
			return adminCall(g, "notify", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.Notify(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, describeAction("notified"))
		},
	}
	f := c.Flags()
	f.StringVar(&req.SessionId, "session", "", "session to notify")
	f.StringVar(&req.User, "user", "", "notify every session of this user")
	f.BoolVar(&all, "all", false, "notify every live session")
	f.StringVar(&req.Topic, "topic", "", "notification topic")
	f.StringVar(&payload, "payload", "", "payload, JSON")
	f.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

// oldPayloadSpelling reports a notify whose --data, which names the data
// directory, holds what looks like a payload: the spelling of hubctl before
// --payload. It is refused, never taken silently either way.
func oldPayloadSpelling(cmd *cobra.Command) bool {
	f := cmd.Flags().Lookup("data")
	if f == nil || !f.Changed {
		return false
	}
	v := strings.TrimSpace(f.Value.String())
	if !json.Valid([]byte(v)) {
		return false
	}
	fi, err := os.Stat(v)
	return err != nil || !fi.IsDir()
}

func newSessions(g *globals) *cobra.Command {
	var (
		req    hubpb.ListSessionsRequest
		asJSON bool
		limit  int
	)
	c := &cobra.Command{
		Use:   "sessions [--user U] [--device D] [--node N]",
		Short: "List live sessions",
		Long: `sessions lists the live sessions the hub's projections hold (every node's
sessions, as this node's log shows them), in session id order. It asks for
them a page at a time and follows the pages to the end (or --limit), so a
table of any size fits.`,
		Example: `  hubctl sessions
  hubctl sessions --user alice --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageError{errors.New("sessions: --limit must be 0 (all) or more")}
			}
			admin, ctx, done, err := g.admin()
			if err != nil {
				return err
			}
			defer done()
			out := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "SESSION\tUSER\tDEVICE\tNODE\tTRANSPORT\tCONNECTED\tREMOTE\tPREVIOUS\tPENDING END")
			}
			shown, total := 0, uint64(0)
			for {
				res, err := admin.ListSessions(ctx, &req)
				if err != nil {
					return callError("sessions", err)
				}
				total = res.GetTotal()
				for _, s := range res.GetSessions() {
					if limit > 0 && shown == limit {
						break
					}
					shown++
					if asJSON {
						b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
						if err != nil {
							return err
						}
						fmt.Fprintln(out, string(compactJSON(b)))
						continue
					}
					// Names are the clients' own: escaped, so none can
					// clear the screen or forge a row (--json has them
					// exact).
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Cell(s.GetSessionId()), termtext.Cell(s.GetUser()), termtext.Cell(s.GetDevice()),
						termtext.Cell(s.GetNode()), termtext.Cell(s.GetTransport()), time.Unix(0, s.GetConnectedUnixNano()).UTC().Format(time.RFC3339), termtext.Cell(s.GetRemoteAddr()),
						termtext.Cell(s.GetPreviousSession()), termtext.Cell(s.GetPendingEnd()))
				}
				req.PageToken = res.GetNextPageToken()
				if req.PageToken == "" || (limit > 0 && shown == limit) {
					break
				}
			}
			if asJSON {
				return nil
			}
			if shown == 0 {
				tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0) // no header over no rows
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(out, hubapi.SessionsSummary(shown, int(total)))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.User, "user", "", "only this user")
	f.StringVar(&req.Device, "device", "", "only this device")
	f.StringVar(&req.Node, "node", "", "only this node")
	f.IntVar(&limit, "limit", 0, "show at most this many (0: all)")
	f.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return c
}

func newSession(g *globals) *cobra.Command {
	var (
		req    hubpb.GetSessionRequest
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "session --session S",
		Short: "Show one live session (Admin.GetSession)",
		Example: `  hubctl session --session 01JD3M1Q4Z8X7W2V5T0R6P9N3K
  hubctl session --session 01JD3M1Q4Z8X7W2V5T0R6P9N3K --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.SessionId == "" {
				return usageError{errors.New("session: --session is required")}
			}
			return adminCall(g, "session", func(c hubpb.AdminClient, ctx context.Context) (proto.Message, error) {
				return c.GetSession(ctx, &req)
			}, cmd.OutOrStdout(), asJSON, func(m proto.Message) string {
				s := m.(*hubpb.SessionInfo)
				var b strings.Builder
				tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				for _, kv := range [][2]string{
					{"session", termtext.Cell(s.GetSessionId())}, {"user", termtext.Cell(s.GetUser())}, {"device", termtext.Cell(s.GetDevice())},
					{"node", termtext.Cell(s.GetNode())}, {"connected", time.Unix(0, s.GetConnectedUnixNano()).UTC().Format(time.RFC3339Nano)},
					{"remote", termtext.Cell(s.GetRemoteAddr())}, {"previous", termtext.Cell(s.GetPreviousSession())}, {"pending end", termtext.Cell(s.GetPendingEnd())},
				} {
					fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
				}
				_ = tw.Flush()
				return strings.TrimRight(b.String(), "\n")
			})
		},
	}
	c.Flags().StringVar(&req.SessionId, "session", "", "the session id")
	c.Flags().BoolVar(&asJSON, "json", false, "print it as JSON")
	return c
}
