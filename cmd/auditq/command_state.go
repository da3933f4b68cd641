package main

import (
	"bufio"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/hub/hubapi"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/projections"
)

type pendingJSON struct {
	Cause        string `json:"cause"`
	Actor        string `json:"actor,omitempty"`
	Reason       string `json:"reason,omitempty"`
	Seq          uint64 `json:"seq"`
	EventID      string `json:"event_id"`
	SupersededBy string `json:"superseded_by,omitempty"`
}

type sessionJSON struct {
	Session    string       `json:"session"`
	User       string       `json:"user"`
	Device     string       `json:"device"`
	Node       string       `json:"node"`
	RemoteAddr string       `json:"remote_addr"`
	Transport  string       `json:"transport,omitempty"`
	Since      string       `json:"since"`
	ConnectSeq uint64       `json:"connect_seq"`
	Previous   string       `json:"previous,omitempty"`
	Ending     *pendingJSON `json:"ending,omitempty"`
}

func (a *app) sessionsCommand() *cobra.Command {
	var at, user, device, node string
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "Who was connected at a time: session, user, device, node, since",
		Long: `Sessions lists the sessions live at --at (after every event at or before it),
oldest connect first. ENDING shows an end the log had already ordered but that
had not happened yet (kicked, banned or superseded).`,
		Example: `  auditq sessions --at 2026-03-01T10:15:00Z
  auditq sessions --at 2h --user alice --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.parseTime("at", at)
			if err != nil {
				return err
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			ls, err := src.SessionsAt(cmd.Context(), t, projections.Filter{User: user, Device: device, Node: node})
			if err != nil {
				return err
			}
			return a.printSessions(ls)
		},
	}
	cmd.Flags().StringVar(&at, "at", "now", "the time (RFC3339, or ago like 2h)")
	cmd.Flags().StringVar(&user, "user", "", "only this user's sessions")
	cmd.Flags().StringVar(&device, "device", "", "only sessions on this device")
	cmd.Flags().StringVar(&node, "node", "", "only sessions on this hubd node")
	return cmd
}

func pendingText(p *projections.PendingEnd) string {
	if p == nil {
		return "-"
	}
	s := audit.CauseName(p.Cause)
	if p.Actor != "" {
		s += " by " + termtext.Field(p.Actor)
	}
	return fmt.Sprintf("%s (seq %d)", s, p.Seq)
}

func (a *app) printSessions(ls []audit.LiveSession) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	switch {
	case a.json:
		for _, s := range ls {
			v := sessionJSON{
				Session: s.ID, User: s.User, Device: s.Device, Node: s.Node, RemoteAddr: s.RemoteAddr, Transport: s.Transport,
				Since: jsonTime(s.ConnectedAt, a.loc), ConnectSeq: s.ConnectSeq, Previous: s.Previous,
			}
			if p := s.Pending; p != nil {
				v.Ending = &pendingJSON{Cause: audit.CauseName(p.Cause), Actor: p.Actor, Reason: p.Reason, Seq: p.Seq, EventID: p.EventID.String(), SupersededBy: p.SupersededBy}
			}
			if err := jsonLine(w, v); err != nil {
				return err
			}
		}
	case a.csv:
		c := csvOut(w, "session", "user", "device", "node", "remote_addr", "since", "connect_seq", "previous", "ending_cause", "ending_actor", "ending_reason", "ending_seq", "transport")
		for _, s := range ls {
			row := []string{s.ID, s.User, s.Device, s.Node, s.RemoteAddr, jsonTime(s.ConnectedAt, a.loc), strconv.FormatUint(s.ConnectSeq, 10), s.Previous, "", "", "", "", s.Transport}
			if p := s.Pending; p != nil {
				row[8], row[9], row[10], row[11] = audit.CauseName(p.Cause), p.Actor, p.Reason, strconv.FormatUint(p.Seq, 10)
			}
			_ = c.Write(row)
		}
		c.Flush()
		return c.Error()
	default:
		if len(ls) > 0 {
			t := newTable(w, "SESSION", "USER", "DEVICE", "NODE", "TRANSPORT", "SINCE", "REMOTE", "ENDING")
			for _, s := range ls {
				t.row(termtext.Cell(s.ID), termtext.Cell(s.User), termtext.Cell(s.Device), termtext.Cell(s.Node), termtext.Cell(s.Transport), fmtTime(s.ConnectedAt, a.loc),
					termtext.Cell(s.RemoteAddr), pendingText(s.Pending))
			}
			t.flush()
		}
		// The line under every list of live sessions, as hubctl sessions
		// prints it (no header over no rows).
		fmt.Fprintln(w, hubapi.SessionsSummary(len(ls), len(ls)))
	}
	return nil
}

type banJSON struct {
	User    string `json:"user"`
	Since   string `json:"since"`
	Until   string `json:"until,omitempty"`
	Actor   string `json:"actor"`
	Reason  string `json:"reason"`
	Seq     uint64 `json:"seq"`
	EventID string `json:"event_id"`
}

func (a *app) bansCommand() *cobra.Command {
	var at, user string
	cmd := &cobra.Command{
		Use:     "bans",
		Short:   "The bans in force at a time: user, since, until, by whom, why",
		Example: `  auditq bans --at 2026-03-01T10:15:00Z` + "\n" + `  auditq bans --at now --user mallory --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.parseTime("at", at)
			if err != nil {
				return err
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			bans, err := src.BansAt(cmd.Context(), t, user)
			if err != nil {
				return err
			}
			return a.printBans(bans)
		},
	}
	cmd.Flags().StringVar(&at, "at", "now", "the time (RFC3339, or ago like 2h)")
	cmd.Flags().StringVar(&user, "user", "", "only this user")
	return cmd
}

func (a *app) printBans(bans []projections.Ban) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	switch {
	case a.json:
		for _, b := range bans {
			if err := jsonLine(w, banJSON{User: b.User, Since: jsonTime(b.Since, a.loc), Until: jsonTime(b.Until, a.loc),
				Actor: b.Actor, Reason: b.Reason, Seq: b.Seq, EventID: b.EventID.String()}); err != nil {
				return err
			}
		}
	case a.csv:
		c := csvOut(w, "user", "since", "until", "actor", "reason", "seq", "event_id")
		for _, b := range bans {
			_ = c.Write([]string{b.User, jsonTime(b.Since, a.loc), jsonTime(b.Until, a.loc), b.Actor, b.Reason, strconv.FormatUint(b.Seq, 10), b.EventID.String()})
		}
		c.Flush()
		return c.Error()
	default:
		t := newTable(w, "USER", "SINCE", "UNTIL", "BY", "SEQ", "REASON")
		for _, b := range bans {
			until := "no expiry"
			if !b.Until.IsZero() {
				until = fmtTime(b.Until, a.loc)
			}
			t.row(termtext.Cell(b.User), fmtTime(b.Since, a.loc), until, termtext.Cell(b.Actor), strconv.FormatUint(b.Seq, 10), dash(b.Reason))
		}
		t.flush()
	}
	return nil
}

type timelineJSON struct {
	Seq     uint64 `json:"seq"`
	ID      string `json:"id"`
	Time    string `json:"time"`
	Type    string `json:"type"`
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"`
	Actor   string `json:"actor,omitempty"`
	Text    string `json:"text"`
}

func (a *app) timelineCommand() *cobra.Command {
	var q audit.TimelineQuery
	var since, until string
	cmd := &cobra.Command{
		Use:   "timeline (--session S | --user U)",
		Short: "A session's or a user's story: connected, notified, kicked by whom for what, ended why, resumed as which session",
		Example: `  auditq timeline --session 01HV6Z...
  auditq timeline --user alice --since 7d`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if q.Since, err = a.parseTime("since", since); err != nil {
				return err
			}
			if q.Until, err = a.parseTime("until", until); err != nil {
				return err
			}
			if (q.Session == "") == (q.User == "") {
				return usagef("timeline needs exactly one of --session or --user")
			}
			q.Loc = a.loc
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			return a.printTimeline(cmd, src, q)
		},
	}
	cmd.Flags().StringVar(&q.Session, "session", "", "the session")
	cmd.Flags().StringVar(&q.User, "user", "", "the user (all their sessions)")
	cmd.Flags().StringVar(&since, "since", "", "from this time on")
	cmd.Flags().StringVar(&until, "until", "", "before this time")
	return cmd
}

func (a *app) printTimeline(cmd *cobra.Command, src source, q audit.TimelineQuery) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	var fn func(audit.TimelineEntry) error
	var done func(error)
	switch {
	case a.json:
		fn = func(e audit.TimelineEntry) error {
			return jsonLine(w, timelineJSON{Seq: e.Seq, ID: e.ID.String(), Time: jsonTime(e.Time, a.loc), Type: audit.TypeName(e.Type),
				User: e.User, Session: e.Session, Actor: e.Actor, Text: e.Text})
		}
	case a.csv:
		c := csvOut(w, "seq", "id", "time", "type", "user", "session", "actor", "text")
		fn = func(e audit.TimelineEntry) error {
			return c.Write([]string{strconv.FormatUint(e.Seq, 10), e.ID.String(), jsonTime(e.Time, a.loc), audit.TypeName(e.Type), e.User, e.Session, e.Actor, e.Text})
		}
		done = func(error) { c.Flush() }
	default:
		t := newTable(w, "TIME", "SEQ", "WHAT HAPPENED")
		fn = func(e audit.TimelineEntry) error {
			t.row(fmtTime(e.Time, a.loc), strconv.FormatUint(e.Seq, 10), e.Text)
			return nil
		}
		done = t.end
	}
	err := src.Timeline(cmd.Context(), q, fn)
	if done != nil {
		done(err)
	}
	return err
}

func (a *app) revocationsCommand() *cobra.Command {
	var at, user string
	cmd := &cobra.Command{
		Use:   "revocations",
		Short: "The client token revocations in force at a time: token or user, issued before, until, by whom, why",
		Long: `revocations lists the token revocations in force at a time, as the projections
hold them: one token by its id (jti), or every token of a user issued before a
time. Each lapses when no token it covers can still be valid (UNTIL); after
that it is no longer listed.`,
		Example: `  auditq revocations --at now` + "\n" + `  auditq revocations --at 2026-03-01T10:15:00Z --user alice --json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := a.parseTime("at", at)
			if err != nil {
				return err
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			revs, err := src.RevocationsAt(cmd.Context(), t, user)
			if err != nil {
				return err
			}
			return a.printRevocations(revs)
		},
	}
	cmd.Flags().StringVar(&at, "at", "now", "the time (RFC3339, or ago like 2h)")
	cmd.Flags().StringVar(&user, "user", "", "only this user's")
	return cmd
}

type revocationJSON struct {
	TokenID      string `json:"token_id,omitempty"`
	User         string `json:"user,omitempty"`
	IssuedBefore string `json:"issued_before,omitempty"`
	Since        string `json:"since"`
	Until        string `json:"until,omitempty"`
	Actor        string `json:"actor"`
	Reason       string `json:"reason"`
	Seq          uint64 `json:"seq"`
	EventID      string `json:"event_id"`
}

func (a *app) printRevocations(revs []projections.Revocation) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	switch {
	case a.json:
		for _, v := range revs {
			if err := jsonLine(w, revocationJSON{TokenID: v.TokenID, User: v.User, IssuedBefore: jsonTime(v.IssuedBefore, a.loc),
				Since: jsonTime(v.Since, a.loc), Until: jsonTime(v.Until, a.loc), Actor: v.Actor, Reason: v.Reason, Seq: v.Seq,
				EventID: v.EventID.String()}); err != nil {
				return err
			}
		}
	case a.csv:
		c := csvOut(w, "token_id", "user", "issued_before", "since", "until", "actor", "reason", "seq", "event_id")
		for _, v := range revs {
			_ = c.Write([]string{v.TokenID, v.User, jsonTime(v.IssuedBefore, a.loc), jsonTime(v.Since, a.loc), jsonTime(v.Until, a.loc),
				v.Actor, v.Reason, strconv.FormatUint(v.Seq, 10), v.EventID.String()})
		}
		c.Flush()
		return c.Error()
	default:
		t := newTable(w, "TOKEN", "USER", "ISSUED BEFORE", "SINCE", "UNTIL", "BY", "SEQ", "REASON")
		for _, v := range revs {
			before, until := "-", "never"
			if !v.IssuedBefore.IsZero() {
				before = fmtTime(v.IssuedBefore, a.loc)
			}
			if !v.Until.IsZero() {
				until = fmtTime(v.Until, a.loc)
			}
			t.row(termtext.Cell(v.TokenID), termtext.Cell(v.User), before, fmtTime(v.Since, a.loc), until, termtext.Cell(v.Actor), strconv.FormatUint(v.Seq, 10), dash(v.Reason))
		}
		t.flush()
	}
	return nil
}
