package main

import (
	"bufio"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/internal/termtext"
)

type statsJSON struct {
	Events           uint64        `json:"events"`
	FirstSeq         uint64        `json:"first_seq"`
	LastSeq          uint64        `json:"last_seq"`
	First            string        `json:"first,omitempty"`
	Last             string        `json:"last,omitempty"`
	ByType           []audit.Count `json:"by_type"`
	ByCause          []audit.Count `json:"by_cause"`
	KickedUsers      []audit.Count `json:"kicked_users"`
	KicksByActor     []audit.Count `json:"kicks_by_actor"`
	BansByActor      []audit.Count `json:"bans_by_actor"`
	RejectedAttempts uint64        `json:"rejected_attempts"`
	// Omitted when empty, so output of logs without them is unchanged.
	RevokesByActor    []audit.Count `json:"revokes_by_actor,omitempty"`
	RefusedAdminCalls []audit.Count `json:"refused_admin_calls,omitempty"`
}

func (a *app) statsCommand() *cobra.Command {
	var ff filterFlags
	var top int
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Counts per event type and disconnect cause, top kicked users, kicks and bans per operator",
		Example: `  auditq stats --since 30d
  auditq stats --since 2026-03-01 --until 2026-04-01 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if top < 0 {
				return usagef("--top %d: want 0 (every row) or more", top)
			}
			f, err := a.filter(&ff)
			if err != nil {
				return err
			}
			src, closeFn, err := a.open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, clear := a.progressCtx(cmd.Context(), "counting", src, true)
			defer clear()
			cmd.SetContext(ctx)
			st, err := src.Stats(cmd.Context(), f)
			clear()
			if perr := a.printStats(st, top); err == nil {
				err = perr
			}
			return err
		},
	}
	ff.register(cmd.Flags(), false)
	cmd.Flags().IntVar(&top, "top", 10, "rows in the top lists of the table, 0 for all (JSON and CSV have all)")
	return cmd
}

func (a *app) printStats(st audit.Stats, top int) error {
	w := bufio.NewWriter(a.stdout)
	defer w.Flush()
	switch {
	case a.json:
		nz := func(c []audit.Count) []audit.Count {
			if c == nil {
				return []audit.Count{}
			}
			return c
		}
		return jsonLine(w, statsJSON{
			Events: st.Events, FirstSeq: st.FirstSeq, LastSeq: st.LastSeq, First: jsonTime(st.FirstTime, a.loc), Last: jsonTime(st.LastTime, a.loc),
			ByType: nz(st.ByType), ByCause: nz(st.ByCause), KickedUsers: nz(st.KickedUsers), KicksByActor: nz(st.KicksByActor),
			BansByActor: nz(st.BansByActor), RejectedAttempts: st.RejectedAttempts,
			RevokesByActor: st.RevokesByActor, RefusedAdminCalls: st.RefusedAdminCalls,
		})
	case a.csv:
		c := csvOut(w, "section", "key", "count")
		_ = c.Write([]string{"total", "events", strconv.FormatUint(st.Events, 10)})
		_ = c.Write([]string{"total", "rejected_attempts", strconv.FormatUint(st.RejectedAttempts, 10)})
		for _, s := range []struct {
			name string
			rows []audit.Count
		}{{"by_type", st.ByType}, {"by_cause", st.ByCause}, {"kicked_users", st.KickedUsers}, {"kicks_by_actor", st.KicksByActor}, {"bans_by_actor", st.BansByActor},
			{"revokes_by_actor", st.RevokesByActor}, {"refused_admin_calls", st.RefusedAdminCalls}} {
			for _, r := range s.rows {
				_ = c.Write([]string{s.name, r.Key, strconv.FormatUint(r.Count, 10)})
			}
		}
		c.Flush()
		return c.Error()
	}
	if st.Events == 0 {
		fmt.Fprintln(w, "no events match")
		return nil
	}
	fmt.Fprintf(w, "%d events, seq %d to %d, %s to %s\n", st.Events, st.FirstSeq, st.LastSeq, fmtTime(st.FirstTime, a.loc), fmtTime(st.LastTime, a.loc))
	section := func(title, col string, rows []audit.Count, limit int) {
		fmt.Fprintf(w, "\n%s\n", title)
		if len(rows) == 0 {
			fmt.Fprintln(w, "  (none)")
			return
		}
		t := newTable(w, "  "+col, "COUNT")
		for i, r := range rows {
			if limit > 0 && i == limit {
				t.row(fmt.Sprintf("  … %d more", len(rows)-limit), "")
				break
			}
			t.row("  "+termtext.Cell(r.Key), strconv.FormatUint(r.Count, 10))
		}
		t.flush()
	}
	section("Events by type", "TYPE", st.ByType, 0)
	section("Disconnects by cause", "CAUSE", st.ByCause, 0)
	section("Most kicked users (sessions ended by a kick)", "USER", st.KickedUsers, top)
	section("Kicks ordered, per operator", "OPERATOR", st.KicksByActor, top)
	section("Bans ordered, per operator", "OPERATOR", st.BansByActor, top)
	if len(st.RevokesByActor) > 0 {
		section("Token revocations ordered, per operator", "OPERATOR", st.RevokesByActor, top)
	}
	if len(st.RefusedAdminCalls) > 0 {
		section("Admin calls refused for their role, per token", "TOKEN", st.RefusedAdminCalls, top)
	}
	fmt.Fprintf(w, "\nRejected connect attempts: %d\n", st.RejectedAttempts)
	return nil
}
