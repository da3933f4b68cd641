package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sessionledger/sessionledger/internal/termtext"
)

// table prints aligned columns while streaming: it holds the first rows
// back to size the columns, then prints every later row at once with those
// widths (a longer cell just pushes its line). The last column is never
// padded.
type table struct {
	w      *bufio.Writer
	widths []int
	held   [][]string
	fixed  bool
	// live flushes every row once the widths are fixed (for --follow).
	live bool
}

// holdRows is how many rows size the columns.
const holdRows = 256

func newTable(w *bufio.Writer, header ...string) *table {
	t := &table{w: w, widths: make([]int, len(header))}
	t.row(header...)
	return t
}

// row adds a row. Names in cells must be escaped already (termtext.Cell);
// as a last guard, anything else in a cell that a terminal would act on
// (a control character, a line break) is escaped too, so no cell can clear
// the screen or start a row of its own.
func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = termtext.Line(c)
	}
	if t.fixed {
		t.print(cells)
		if t.live {
			_ = t.w.Flush()
		}
		return
	}
	for i, c := range cells {
		if i < len(t.widths) {
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	t.held = append(t.held, cells)
	if len(t.held) >= holdRows {
		t.flush()
	}
}

// fix sets minimum widths and prints from now on every row at once,
// flushed (for --follow, where rows trickle in).
func (t *table) fix(widths ...int) {
	for i, w := range widths {
		if i < len(t.widths) {
			t.widths[i] = max(t.widths[i], w)
		}
	}
	t.live = true
	t.flush()
}

// end prints what is held, unless the query failed before any row: then
// not even the header, so that a failed command prints only its error.
func (t *table) end(err error) {
	if err != nil && !t.fixed && len(t.held) <= 1 {
		t.held = nil
		return
	}
	t.flush()
}

// flush prints the held rows and fixes the widths.
func (t *table) flush() {
	for _, r := range t.held {
		t.print(r)
	}
	t.held = nil
	t.fixed = true
	_ = t.w.Flush()
}

func (t *table) print(cells []string) {
	var b strings.Builder
	for i, c := range cells {
		if i == len(cells)-1 {
			b.WriteString(c)
			break
		}
		b.WriteString(c)
		if i < len(t.widths) {
			b.WriteString(strings.Repeat(" ", max(t.widths[i]-utf8.RuneCountInString(c), 0)))
		}
		b.WriteString("  ")
	}
	t.w.WriteString(strings.TrimRight(b.String(), " "))
	t.w.WriteByte('\n')
}

// fmtTime shows t in RFC3339 (with fractional seconds only when it has
// them) in loc, or "-" for the zero time.
func fmtTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return "-"
	}
	return t.In(loc).Format(time.RFC3339Nano)
}

// timeWidth is the longest fmtTime in loc: RFC3339 with nanoseconds, and
// the zone as Z in UTC, else as an offset (a zone can be at UTC+0 part of
// the year, when it shows Z, shorter).
func timeWidth(loc *time.Location) int {
	t := time.Date(2006, 1, 2, 15, 4, 5, 123456789, time.FixedZone("", -(10*60+30)*60))
	if loc == time.UTC {
		t = t.UTC()
	}
	return len(t.Format(time.RFC3339Nano))
}

// jsonLine writes v as one JSON line.
func jsonLine(w *bufio.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Write(b)
	return w.WriteByte('\n')
}

// csvOut writes CSV rows through w.
func csvOut(w *bufio.Writer, header ...string) *csv.Writer {
	c := csv.NewWriter(w)
	_ = c.Write(header)
	return c
}

// jsonTime is a time for encoding/json in the chosen zone; zero is omitted
// by the callers with omitempty on a pointer or empty string.
func jsonTime(t time.Time, loc *time.Location) string {
	if t.IsZero() {
		return ""
	}
	return t.In(loc).Format(time.RFC3339Nano)
}

// dash is "-" for an empty cell. Cells that hold names use termtext.Cell,
// which does this too; dash is for free text in a table's last column,
// which row escapes.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
