package main

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/projections"
)

type replaySessionJSON struct {
	Session string `json:"session"`
	User    string `json:"user"`
	Device  string `json:"device,omitempty"`
	Node    string `json:"node,omitempty"`
}

type replayEndJSON struct {
	replaySessionJSON
	Cause        string `json:"cause"`
	CauseEventID string `json:"cause_event_id,omitempty"`
	SupersededBy string `json:"superseded_by,omitempty"`
}

type replayBanJSON struct {
	User   string `json:"user"`
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
	Until  string `json:"until,omitempty"`
}

type replayStepJSON struct {
	Seq      uint64             `json:"seq"`
	Time     string             `json:"time"`
	Type     string             `json:"type"`
	User     string             `json:"user,omitempty"`
	Session  string             `json:"session,omitempty"`
	Actor    string             `json:"actor,omitempty"`
	Reason   string             `json:"reason,omitempty"`
	Started  *replaySessionJSON `json:"started,omitempty"`
	Ended    *replayEndJSON     `json:"ended,omitempty"`
	MustEnd  []pendingStepJSON  `json:"must_end,omitempty"`
	Banned   *replayBanJSON     `json:"banned,omitempty"`
	Unbanned *replayBanJSON     `json:"unbanned,omitempty"`
	Expired  []replayBanJSON    `json:"expired,omitempty"`
	Anomaly  string             `json:"anomaly,omitempty"`
	Live     int                `json:"live"`
	Bans     int                `json:"bans"`
}

type pendingStepJSON struct {
	Session string `json:"session"`
	User    string `json:"user"`
	pendingJSON
}

func (a *app) replayCommand() *cobra.Command {
	var from, to, user string
	cmd := &cobra.Command{
		Use:   "replay --from T1 [--to T2] [--user U]",
		Short: "Step through the events of a window and show what each changed in the sessions and bans",
		Long: `Replay rebuilds the session table and the bans as they were just before
--from, then applies the events up to --to one by one and shows, after each,
what changed: sessions started (+) and ended (-), sessions the log says must
end (!), bans placed, lifted or expired, anomalies, and how many sessions were
live and bans in force afterwards. --json emits one object per step.`,
		Example: `  auditq replay --from 2026-03-01T10:00:00Z --to 2026-03-01T10:30:00Z
  auditq replay --from 1h --user alice --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var q audit.ReplayQuery
			var err error
			if from == "" {
				return usagef("replay needs --from")
			}
			if q.From, err = a.parseTime("from", from); err != nil {
				return err
			}
			if q.To, err = a.parseTime("to", to); err != nil {
				return err
			}
			q.User = user
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, clear := a.progressCtx(cmd.Context(), "replaying", src, !a.outTTY) // a terminal shows the steps themselves
			defer clear()
			cmd.SetContext(ctx)
			return a.printReplay(cmd, src, q)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "start of the window (required)")
	cmd.Flags().StringVar(&to, "to", "", "end of the window (default: the head)")
	cmd.Flags().StringVar(&user, "user", "", "only the steps about this user")
	return cmd
}

func sessRef(s projections.Session) string {
	return fmt.Sprintf("%s (%s/%s)", termtext.Field(s.ID), termtext.Field(s.User), termtext.Cell(s.Device))
}

// changeText says in a few words what a step changed.
func (a *app) changeText(ch projections.Change) string {
	var parts []string
	for _, b := range ch.Expired {
		parts = append(parts, "ban of "+termtext.Field(b.User)+" expired")
	}
	if s := ch.Started; s != nil {
		p := "+" + sessRef(*s)
		if s.Previous != "" {
			p += " resumes " + termtext.Field(s.Previous)
		}
		parts = append(parts, p)
	}
	for _, p := range ch.Pending {
		t := "!" + termtext.Field(p.Session) + " must end: " + audit.CauseName(p.Cause)
		if p.Actor != "" {
			t += " by " + termtext.Field(p.Actor)
		}
		parts = append(parts, t)
	}
	if e := ch.Ended; e != nil {
		parts = append(parts, "-"+termtext.Field(e.ID)+" ("+audit.CauseName(e.Cause)+")")
	}
	if b := ch.Banned; b != nil {
		t := "+ban " + termtext.Field(b.User)
		if !b.Until.IsZero() {
			t += " until " + fmtTime(b.Until, a.loc)
		}
		parts = append(parts, t)
	}
	if b := ch.Unbanned; b != nil {
		parts = append(parts, "-ban "+termtext.Field(b.User))
	}
	if ch.Anomaly != "" {
		parts = append(parts, "anomaly: "+termtext.Line(ch.Anomaly))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// stepType names a step's event type; a record of another topic than the
// session events (no event) is "not_an_event" in every format.
func stepType(s audit.Step) string {
	if s.Record.Event == nil {
		return "not_an_event"
	}
	return audit.TypeName(s.Record.Event.GetType())
}

func (a *app) stepJSON(s audit.Step) replayStepJSON {
	ev, ch := s.Record.Event, s.Change
	out := replayStepJSON{
		Seq: s.Record.Seq, Time: jsonTime(s.Record.Time, a.loc), Type: stepType(s),
		User: ev.GetUser(), Session: ev.GetSession(), Actor: ev.GetActor(), Reason: ev.GetReason(),
		Anomaly: ch.Anomaly, Live: s.Live, Bans: s.Bans,
	}
	if x := ch.Started; x != nil {
		out.Started = &replaySessionJSON{x.ID, x.User, x.Device, x.Node}
	}
	if x := ch.Ended; x != nil {
		e := &replayEndJSON{replaySessionJSON: replaySessionJSON{x.ID, x.User, x.Device, x.Node}, Cause: audit.CauseName(x.Cause), SupersededBy: x.SupersededBy}
		if x.CauseEventID != [16]byte{} {
			e.CauseEventID = x.CauseEventID.String()
		}
		out.Ended = e
	}
	for _, p := range ch.Pending {
		out.MustEnd = append(out.MustEnd, pendingStepJSON{p.Session, p.User, pendingJSON{Cause: audit.CauseName(p.Cause), Actor: p.Actor,
			Reason: p.Reason, Seq: p.Seq, EventID: p.EventID.String(), SupersededBy: p.SupersededBy}})
	}
	ban := func(b *projections.Ban) *replayBanJSON {
		if b == nil {
			return nil
		}
		return &replayBanJSON{User: b.User, Actor: b.Actor, Reason: b.Reason, Until: jsonTime(b.Until, a.loc)}
	}
	out.Banned, out.Unbanned = ban(ch.Banned), ban(ch.Unbanned)
	for i := range ch.Expired {
		out.Expired = append(out.Expired, *ban(&ch.Expired[i]))
	}
	return out
}

func (a *app) printReplay(cmd *cobra.Command, src source, q audit.ReplayQuery) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	var fn func(audit.Step) error
	var done func(error)
	switch {
	case a.json:
		fn = func(s audit.Step) error { return jsonLine(w, a.stepJSON(s)) }
	case a.csv:
		c := csvOut(w, "seq", "time", "type", "user", "session", "actor", "reason", "change", "live", "bans")
		fn = func(s audit.Step) error {
			ev := s.Record.Event
			return c.Write([]string{strconv.FormatUint(s.Record.Seq, 10), jsonTime(s.Record.Time, a.loc), stepType(s),
				ev.GetUser(), ev.GetSession(), ev.GetActor(), ev.GetReason(), a.changeText(s.Change), strconv.Itoa(s.Live), strconv.Itoa(s.Bans)})
		}
		done = func(error) { c.Flush() }
	default:
		t := newTable(w, "SEQ", "TIME", "TYPE", "USER", "ACTOR", "LIVE", "BANS", "CHANGE")
		fn = func(s audit.Step) error {
			ev := s.Record.Event
			t.row(strconv.FormatUint(s.Record.Seq, 10), fmtTime(s.Record.Time, a.loc), stepType(s), termtext.Cell(ev.GetUser()),
				termtext.Cell(ev.GetActor()), strconv.Itoa(s.Live), strconv.Itoa(s.Bans), a.changeText(s.Change))
			return nil
		}
		done = t.end
	}
	err := src.Replay(cmd.Context(), q, fn)
	if done != nil {
		done(err)
	}
	return err
}
