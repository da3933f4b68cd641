package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sessionledger/sessionledger/audit"
	"github.com/sessionledger/sessionledger/internal/termtext"
	"github.com/sessionledger/sessionledger/ledger"
)

// filterFlags are the event filters events, export and stats share.
type filterFlags struct {
	user, session, device, actor string
	message                      string
	types                        []string
	since, until                 string
	limit                        uint64
}

func (f *filterFlags) register(fs *pflag.FlagSet, withLimit bool) {
	fs.StringVar(&f.user, "user", "", "events about this user")
	fs.StringVar(&f.session, "session", "", "events about this session")
	fs.StringVar(&f.device, "device", "", "events about this device")
	fs.StringVar(&f.actor, "actor", "", "events ordered by this operator (or \"system\", or the user)")
	fs.StringVar(&f.message, "message", "", "the event whose message id this is (the id a cluster's OUTCOME_UNKNOWN answer names; reads the whole window)")
	fs.StringArrayVar(&f.types, "type", nil, "event type, repeatable: "+strings.Join(audit.TypeNames(), ", "))
	fs.StringVar(&f.since, "since", "", "from this time on (RFC3339, or ago like 2h)")
	fs.StringVar(&f.until, "until", "", "before this time")
	if withLimit {
		fs.Uint64Var(&f.limit, "limit", 0, "at most this many events (0: all)")
	}
}

func (a *app) filter(f *filterFlags) (audit.Filter, error) {
	out := audit.Filter{User: f.user, Session: f.session, Device: f.device, Actor: f.actor, Message: f.message, Limit: f.limit}
	for _, t := range f.types {
		for _, name := range strings.Split(t, ",") {
			typ, err := audit.ParseType(name)
			if err != nil {
				return out, fmt.Errorf("--type: %w", err)
			}
			out.Types = append(out.Types, typ)
		}
	}
	var err error
	if out.Since, err = a.parseTime("since", f.since); err != nil {
		return out, err
	}
	if out.Until, err = a.parseTime("until", f.until); err != nil {
		return out, err
	}
	return out, out.Validate()
}

func (a *app) eventsCommand() *cobra.Command {
	var ff filterFlags
	var follow bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List the events that match the filters, in log order",
		Example: `  auditq events --user alice --type kick_requested --type user_banned
  auditq events --actor ops-bob --since 24h --json
  auditq events --addr 127.0.0.1:7070 --follow`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := a.filter(&ff)
			if err != nil {
				return err
			}
			open := a.open
			if follow {
				open = a.openLive
			}
			src, closeFn, err := open(cmd.Context())
			if err != nil {
				return err
			}
			defer closeFn()
			return a.printEvents(cmd, src, f, follow, a.format())
		},
	}
	ff.register(cmd.Flags(), true)
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events as hubd records them (Ctrl-C ends)")
	return cmd
}

func (a *app) format() string {
	switch {
	case a.json:
		return "jsonl"
	case a.csv:
		return "csv"
	default:
		return "table"
	}
}

func (a *app) exportCommand() *cobra.Command {
	var ff filterFlags
	var format, output string
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export the matching events as JSON lines or CSV, streaming in constant memory",
		Long: `Export writes every matching event with all its fields, its details and its
chain hash. JSON lines: one object per event, keys in a fixed order. CSV: a
header row, then one row per event; the details column is a JSON object.

CSV cells are the recorded text as it is, even where it begins with = + - or
@, which a spreadsheet may run as a formula: import a CSV export with every
column as text (see docs/auditq.md).`,
		Example: `  auditq export --format jsonl --since 2026-03-01 --until 2026-04-01 > march.jsonl
  auditq export --format csv --user alice -o alice.csv
  auditq export --csv --user alice -o alice.csv`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// --csv and --json choose the format too; --format, if given,
			// must agree with them.
			switch {
			case format == "" && a.csv:
				format = "csv"
			case format == "":
				format = "jsonl"
			case format != "jsonl" && format != "csv":
				return usagef("--format %q: want jsonl or csv", format)
			case a.csv && format != "csv", a.json && format != "jsonl":
				return usagef("--format %s conflicts with --%s", format, map[bool]string{true: "csv", false: "json"}[a.csv])
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
			ctx, clear := a.progressCtx(cmd.Context(), "exporting", src, !a.outTTY || (output != "" && output != "-"))
			defer clear()
			cmd.SetContext(ctx)
			if output != "" && output != "-" {
				file, err := os.Create(output)
				if err != nil {
					return err
				}
				err = a.exportTo(cmd, file, src, f, format)
				if cerr := file.Close(); err == nil {
					err = cerr
				}
				return err
			}
			return a.exportTo(cmd, a.stdout, src, f, format)
		},
	}
	ff.register(cmd.Flags(), true)
	cmd.Flags().StringVar(&format, "format", "", "jsonl or csv (default: csv with --csv, else jsonl)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return cmd
}

// exporter is a source that formats an export itself, faster than
// formatting the records Events delivers (audit.Engine does; a hub's
// records arrive decoded, so audit.Client does not).
type exporter interface {
	Export(ctx context.Context, w io.Writer, f audit.Filter, format string, loc *time.Location) error
}

var _ exporter = (*audit.Engine)(nil)

func (a *app) exportTo(cmd *cobra.Command, w io.Writer, src source, f audit.Filter, format string) error {
	if ex, ok := src.(exporter); ok {
		return ex.Export(cmd.Context(), w, f, format, a.loc)
	}
	saved := a.stdout
	a.stdout = w
	defer func() { a.stdout = saved }()
	return a.printEvents(cmd, src, f, false, format)
}

// printEvents streams events in one of the formats: table, jsonl, csv.
func (a *app) printEvents(cmd *cobra.Command, src source, f audit.Filter, follow bool, format string) error {
	w := bufio.NewWriterSize(a.stdout, 64<<10)
	var fn func(*ledger.Record) error
	var done func(error)
	switch format {
	case "jsonl":
		var buf []byte
		fn = func(r *ledger.Record) error {
			buf = audit.AppendJSON(buf[:0], r, a.loc)
			buf = append(buf, '\n')
			_, err := w.Write(buf)
			if follow {
				err = w.Flush()
			}
			return err
		}
	case "csv":
		c := csv.NewWriter(w)
		_ = c.Write(audit.CSVHeader)
		var row []string
		fn = func(r *ledger.Record) error {
			var err error
			if row, err = audit.WriteCSV(c, row, r, a.loc); err != nil {
				return err
			}
			if follow {
				c.Flush()
				return w.Flush()
			}
			return nil
		}
		done = func(error) { c.Flush() }
	default:
		t := newTable(w, "SEQ", "TIME", "TYPE", "USER", "DEVICE", "SESSION", "ACTOR", "REASON", "DETAILS")
		fn = func(r *ledger.Record) error {
			ev := r.Event
			var det []string
			for _, d := range audit.Details(ev, a.loc) {
				det = append(det, d.Key+"="+termtext.Field(audit.FieldText(d.Value)))
			}
			t.row(fmt.Sprint(r.Seq), fmtTime(r.Time, a.loc), audit.TypeName(ev.GetType()), termtext.Cell(ev.GetUser()),
				termtext.Cell(ev.GetDevice()), termtext.Cell(ev.GetSession()), termtext.Cell(ev.GetActor()), termtext.Cell(ev.GetReason()), strings.Join(det, " "))
			return nil
		}
		if follow {
			// Rows come one by one as hubd records them: print each at once,
			// with widths that suit typical values, and TIME as wide as the
			// longest time (hubd records nanoseconds).
			t.fix(10, timeWidth(a.loc), 20, 10, 8, 26, 10, 10)
		}
		done = t.end
	}
	if _, local := src.(*audit.Engine); !local && a.tick != nil {
		// A hub's records come through here: count them for the progress
		// line (the engine counts its own reads).
		inner := fn
		fn = func(r *ledger.Record) error {
			a.tick(r.Seq)
			return inner(r)
		}
	}
	err := src.Events(cmd.Context(), f, follow, fn)
	if done != nil {
		done(err)
	}
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}
