package audit

import (
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"

	"github.com/sessionledger/sessionledger/ledger"
	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// CSVHeader is the header row of ExportCSV.
var CSVHeader = []string{"seq", "id", "time", "type", "user", "device", "session", "node", "actor", "reason", "details", "hash"}

// AppendJSON appends r as one JSON object (no newline): seq, id, time
// (RFC3339 with nanoseconds, in loc), type, user, device, session, node,
// actor, reason, details (the body fields Details returns) and the chain
// hash in hex. Keys are always in this order, so output is stable and
// diffable. It is hand-written because export must keep up with the log.
func AppendJSON(b []byte, r *ledger.Record, loc *time.Location) []byte {
	ev := r.Event
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"id":"`...)
	b = appendID(b, r.ID)
	b = append(b, `","time":"`...)
	b = r.Time.In(loc).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":"`...)
	b = append(b, TypeName(ev.GetType())...)
	b = append(b, '"')
	for _, kv := range [...][2]string{
		{"user", ev.GetUser()}, {"device", ev.GetDevice()}, {"session", ev.GetSession()},
		{"node", ev.GetNode()}, {"actor", ev.GetActor()}, {"reason", ev.GetReason()},
	} {
		b = append(b, ',', '"')
		b = append(b, kv[0]...)
		b = append(b, '"', ':')
		b = appendJSONString(b, kv[1])
	}
	b = append(b, `,"details":`...)
	b = appendEventDetailsJSON(b, ev, loc)
	b = append(b, `,"hash":"`...)
	b = hex.AppendEncode(b, r.Hash[:])
	return append(b, '"', '}')
}

func appendDetailsJSON(b []byte, fields []Field) []byte {
	b = append(b, '{')
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.Key)
		b = append(b, ':')
		switch v := f.Value.(type) {
		case string:
			b = appendJSONString(b, v)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case json.RawMessage:
			b = append(b, v...)
		case []string:
			b = append(b, '[')
			for j, s := range v {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, s)
			}
			b = append(b, ']')
		default:
			b = append(b, "null"...)
		}
	}
	return append(b, '}')
}

// jsonDetails writes details as the members of a JSON object.
type jsonDetails struct {
	b []byte
	n int
}

func (j *jsonDetails) key(k string) {
	if j.n > 0 {
		j.b = append(j.b, ',')
	}
	j.n++
	j.b = appendJSONString(j.b, k)
	j.b = append(j.b, ':')
}

func (j *jsonDetails) str(k, v string)                 { j.key(k); j.b = appendJSONString(j.b, v) }
func (j *jsonDetails) raw(k string, v json.RawMessage) { j.key(k); j.b = append(j.b, v...) }
func (j *jsonDetails) num(k string, v int64)           { j.key(k); j.b = strconv.AppendInt(j.b, v, 10) }
func (j *jsonDetails) unum(k string, v uint64)         { j.key(k); j.b = strconv.AppendUint(j.b, v, 10) }
func (j *jsonDetails) list(k string, v []string) {
	j.key(k)
	j.b = append(j.b, '[')
	for i, s := range v {
		if i > 0 {
			j.b = append(j.b, ',')
		}
		j.b = appendJSONString(j.b, s)
	}
	j.b = append(j.b, ']')
}

// appendEventDetailsJSON appends ev's details object, as
// appendDetailsJSON(b, Details(ev, loc)) would, without the []Field.
func appendEventDetailsJSON(b []byte, ev *eventpb.Event, loc *time.Location) []byte {
	j := jsonDetails{b: append(b, '{')}
	visitDetails(ev, &j, loc)
	return append(j.b, '}')
}

// DetailsJSON is the details object of AppendJSON on its own.
func DetailsJSON(fields []Field) string { return string(appendDetailsJSON(nil, fields)) }

// CSVRow returns r as a row under CSVHeader; details is a JSON object.
func CSVRow(row []string, r *ledger.Record, loc *time.Location) []string {
	ev := r.Event
	return append(row[:0],
		strconv.FormatUint(r.Seq, 10), r.ID.String(), r.Time.In(loc).Format(time.RFC3339Nano), TypeName(ev.GetType()),
		ev.GetUser(), ev.GetDevice(), ev.GetSession(), ev.GetNode(), ev.GetActor(), ev.GetReason(),
		string(appendEventDetailsJSON(nil, ev, loc)), hex.EncodeToString(r.Hash[:]))
}

// WriteCSV writes r as one CSV row under CSVHeader.
func WriteCSV(w *csv.Writer, row []string, r *ledger.Record, loc *time.Location) ([]string, error) {
	row = CSVRow(row, r, loc)
	return row, w.Write(row)
}

// appendID appends id as ULID text, as id.String() would, without the
// string.
func appendID(b []byte, id ulid.ULID) []byte {
	var t [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(t[:]) // fails only for a short buffer
	return append(b, t[:]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, and the HTML
// characters and line separators escaped as encoding/json does.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
