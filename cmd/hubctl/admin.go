package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/hub/hubpb"
	"github.com/sessionledger/sessionledger/internal/termtext"
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
		Use:   "kick (--session S | --user U [--device D]) --reason R",
		Short: "End a session, a user's sessions, or a user's sessions on one device",
		Long: `kick records a kick_requested event (with you as the actor, from the admin
token) and returns once it is durable and applied; the targeted sessions then
receive Disconnect{kicked} and end, and each end is recorded.

Graceful by default (Disconnect frame, then the status); --abort closes the
client's connection at once. The client is told it may reconnect, unless
--no-reconnect or --reconnect-after.`,
		Example: `  hubctl kick --user alice --reason "password changed" --no-reconnect
  hubctl kick --session 01JD3M1Q4Z8X7W2V5T0R6P9N3K --reason "stuck client" --abort
  hubctl kick --user bob --device tablet --reason "moved to phone" --reconnect-after 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case req.SessionId == "" && req.User == "":
				return usageError{errors.New("kick: give --session or --user")}
			case req.SessionId != "" && (req.User != "" || req.Device != ""):
				return usageError{errors.New("kick: --session cannot go with --user or --device")}
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
--for or --until the ban does not expire.`,
		Example: `  hubctl ban --user mallory --for 24h --reason "spam"
  hubctl ban --user mallory --until 2026-12-01T00:00:00Z --reason "chargeback"`,
		Args: cobra.NoArgs,
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
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usageError{fmt.Errorf("ban: --until %q: want an RFC3339 time like 2026-12-01T00:00:00Z", until)}
				}
				now := time.Now()
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
	f.StringVar(&until, "until", "", "ban end, RFC3339")
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
		Args:    cobra.NoArgs,
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
		Args:    cobra.NoArgs,
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
		req    hubpb.NotifyRequest
		all    bool
		data   string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "notify (--session S | --user U | --all) --topic T --data JSON",
		Short: "Send a notification to a session, a user's sessions, or everyone",
		Long: `notify records a notification_sent event; live sessions it addresses receive
it as a Notification frame, and a session that resumes later gets the ones
it missed. Here --data is the payload (JSON); give the data directory as
--data-dir or HUBCTL_DATA.`,
		Example: `  hubctl notify --user alice --topic chat --data '{"text":"hello"}'
  hubctl notify --all --topic maintenance --data '{"in":"10m"}'`,
		Args: cobra.NoArgs,
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
			case !json.Valid([]byte(data)):
				return usageError{fmt.Errorf("notify: --data %q is not valid JSON", data)}
			}
			switch {
			case req.SessionId != "":
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_SESSION
			case req.User != "":
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_USER
			default:
				req.Target = hubpb.NotifyTarget_NOTIFY_TARGET_ALL
			}
			req.Payload = []byte(data)
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
	f.StringVar(&data, "data", "", "payload, JSON")
	f.BoolVar(&asJSON, "json", false, "print the reply as JSON")
	return c
}

func newSessions(g *globals) *cobra.Command {
	var (
		req    hubpb.ListSessionsRequest
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "sessions [--user U] [--device D] [--node N]",
		Short: "List live sessions",
		Example: `  hubctl sessions
  hubctl sessions --user alice --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			admin, ctx, done, err := g.admin()
			if err != nil {
				return err
			}
			defer done()
			res, err := admin.ListSessions(ctx, &req)
			if err != nil {
				return callError("sessions", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				for _, s := range res.GetSessions() {
					b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
					if err != nil {
						return err
					}
					fmt.Fprintln(out, string(compactJSON(b)))
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tUSER\tDEVICE\tNODE\tCONNECTED\tREMOTE\tPREVIOUS\tPENDING END")
			for _, s := range res.GetSessions() {
				// Names are the clients' own: escaped, so none can clear
				// the screen or forge a row (--json has them exact).
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", termtext.Cell(s.GetSessionId()), termtext.Cell(s.GetUser()), termtext.Cell(s.GetDevice()),
					termtext.Cell(s.GetNode()), time.Unix(0, s.GetConnectedUnixNano()).UTC().Format(time.RFC3339), termtext.Cell(s.GetRemoteAddr()),
					termtext.Cell(s.GetPreviousSession()), termtext.Cell(s.GetPendingEnd()))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(out, "%d live session(s)\n", len(res.GetSessions()))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&req.User, "user", "", "only this user")
	f.StringVar(&req.Device, "device", "", "only this device")
	f.StringVar(&req.Node, "node", "", "only this node")
	f.BoolVar(&asJSON, "json", false, "one JSON object per line")
	return c
}
