package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// exportFlush is how much output Export gathers before it writes it. The
// records behind it are read in one short read transaction that ends before
// the write, so a slow reader of w (a pipe, a terminal) never holds one
// open; and memory stays flat whatever the size of the log.
const exportFlush = 1 << 20

// Export writes every event that matches f to w in format (FormatJSONL:
// AppendJSON lines; FormatCSV: CSVHeader, then CSVRow rows as encoding/csv
// writes them), times in loc (nil: UTC). The output is byte for byte what
// formatting each record Events delivers gives, but a scan of the log (a
// filter that names neither a user nor a session) decodes each event into
// one reused message instead of a fresh record, which is most of the cost
// of an export. Damaged records are skipped and reported at the end as a
// *CorruptError, as Events does.
func (e *Engine) Export(ctx context.Context, w io.Writer, f Filter, format string, loc *time.Location) error {
	if format != FormatJSONL && format != FormatCSV {
		return invalid("export format %q: want %s or %s", format, FormatJSONL, FormatCSV)
	}
	if err := f.Validate(); err != nil {
		return err
	}
	if loc == nil {
		loc = time.UTC
	}
	x := &exporter{w: w, csv: format == FormatCSV, loc: loc, buf: make([]byte, 0, exportFlush+64<<10)}
	if x.csv {
		x.buf = appendCSVRow(x.buf, CSVHeader)
	}
	var err error
	if f.User != "" || f.Session != "" || f.Message != "" {
		// Through an index: few records, and Events already reads them in
		// batches outside the read transaction. A message id has no index
		// but only a decoded Record carries it (ScanRaw skips the
		// watermill fields), and it matches one record at most.
		err = e.Events(ctx, f, false, func(r *ledger.Record) error {
			x.add(r)
			if len(x.buf) >= exportFlush {
				return x.flush()
			}
			return nil
		})
	} else {
		err = e.exportScan(ctx, &f, x)
	}
	if ferr := x.flush(); err == nil {
		err = ferr
	}
	return err
}

// exportScan is Export over a scan of the log: ScanRaw, a reused event and
// a batch of output per read transaction. Like Events, it skips and notes
// records that do not decode and the seqs the log jumps over.
func (e *Engine) exportScan(ctx context.Context, f *Filter, x *exporter) error {
	from, to, empty, err := e.seqRange(ctx, f.Since, f.Until)
	if err != nil || empty {
		return err
	}
	c := &corruptions{}
	// Every event in full. Byte fields may alias ScanRaw's bytes: each
	// record is formatted before the next is decoded, inside the read
	// transaction that owns them.
	dec := eventpb.NewDecoder(eventpb.DecoderOptions{Intern: true, AliasBytes: true})
	var slot eventpb.Slot
	var rec ledger.Record
	var sent uint64
	next := from
	progress := progressOf(ctx)
	for {
		full, done := false, false
		err := e.store.ScanRaw(ctx, next, to, func(raw *ledger.RawRecord) error {
			if raw.Seq > next {
				c.addMissing(next, raw.Seq-1)
			}
			next = raw.Seq + 1
			progress(raw.Seq)
			if raw.Event == nil {
				return nil // not an event: never matches
			}
			ev, err := dec.Decode(&slot, raw.Event)
			if err != nil {
				c.add(raw.Seq, fmt.Errorf("%w: seq %d: %v", ledger.ErrCorrupt, raw.Seq, err))
				return nil
			}
			rec = ledger.Record{Seq: raw.Seq, ID: raw.ID, Time: raw.Time, Hash: raw.Hash, Event: ev}
			if !f.Match(&rec) {
				return nil
			}
			x.add(&rec)
			sent++
			switch {
			case f.Limit > 0 && sent >= f.Limit:
				done = true
			case len(x.buf) >= exportFlush:
				full = true
			default:
				return nil
			}
			return ledger.ErrStop
		})
		// The read transaction has ended: write what it gave.
		if ferr := x.flush(); ferr != nil {
			return ferr
		}
		if err != nil && errors.Is(err, ledger.ErrCorrupt) {
			// The read met damage before the next record it could
			// deliver: note it and go on after it, as Events does.
			var sound *ledger.Record
			if next, sound = e.skipDamaged(next, to, c, err); sound != nil && f.Match(sound) {
				// A sound record after damage that is no record.
				x.add(sound)
				if sent++; f.Limit > 0 && sent >= f.Limit {
					break
				}
			}
			if to != 0 && next > to {
				break
			}
			continue
		}
		if err != nil {
			return err
		}
		if done {
			break
		}
		if !full {
			if to != 0 && next <= to {
				c.addMissing(next, to) // the log ends early
			}
			break
		}
	}
	return c.err()
}

// exporter formats records into buf and writes buf to w.
type exporter struct {
	w       io.Writer
	csv     bool
	loc     *time.Location
	buf     []byte
	scratch []byte
	err     error
}

func (x *exporter) add(r *ledger.Record) {
	if !x.csv {
		x.buf = AppendJSON(x.buf, r, x.loc)
		x.buf = append(x.buf, '\n')
		return
	}
	x.buf, x.scratch = appendCSVRecord(x.buf, x.scratch, r, x.loc)
}

func (x *exporter) flush() error {
	if x.err == nil && len(x.buf) > 0 {
		_, x.err = x.w.Write(x.buf)
	}
	x.buf = x.buf[:0]
	return x.err
}

// appendCSVRecord appends CSVRow(r) as encoding/csv writes it, using
// scratch for the fields that need formatting.
func appendCSVRecord(b, scratch []byte, r *ledger.Record, loc *time.Location) ([]byte, []byte) {
	ev := r.Event
	b = strconv.AppendUint(b, r.Seq, 10) // digits: never quoted
	b = append(b, ',')
	b = appendID(b, r.ID) // base32: never quoted
	b = append(b, ',')
	scratch = r.Time.In(loc).AppendFormat(scratch[:0], time.RFC3339Nano)
	b = appendCSVField(b, scratch)
	for _, s := range [...]string{TypeName(ev.GetType()), ev.GetUser(), ev.GetDevice(), ev.GetSession(), ev.GetNode(), ev.GetActor(), ev.GetReason()} {
		b = append(b, ',')
		b = appendCSVField(b, s)
	}
	b = append(b, ',')
	scratch = appendEventDetailsJSON(scratch[:0], ev, loc)
	b = appendCSVField(b, scratch)
	b = append(b, ',')
	b = hex.AppendEncode(b, r.Hash[:]) // hex: never quoted
	return append(b, '\n'), scratch
}

// appendCSVRow appends row as encoding/csv writes it.
func appendCSVRow(b []byte, row []string) []byte {
	for i, s := range row {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCSVField(b, s)
	}
	return append(b, '\n')
}

// appendCSVField appends one field as encoding/csv's Writer (comma ',', no
// CRLF) writes it: quoted, with quotes doubled, when it holds a comma, a
// quote, CR or LF, starts with a space character, or is `\.`.
func appendCSVField[T string | []byte](b []byte, f T) []byte {
	if !csvNeedsQuotes(f) {
		return append(b, f...)
	}
	b = append(b, '"')
	for i := 0; i < len(f); i++ {
		if f[i] == '"' {
			b = append(b, '"', '"')
		} else {
			b = append(b, f[i])
		}
	}
	return append(b, '"')
}

func csvNeedsQuotes[T string | []byte](f T) bool {
	if len(f) == 0 {
		return false
	}
	if string(f) == `\.` {
		return true
	}
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case '\n', '\r', '"', ',':
			return true
		}
	}
	var r rune
	if c := f[0]; c < utf8.RuneSelf {
		r = rune(c)
	} else {
		r, _ = utf8.DecodeRuneInString(string(f[:min(len(f), utf8.UTFMax)]))
	}
	return unicode.IsSpace(r)
}
