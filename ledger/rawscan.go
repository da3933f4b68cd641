package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// RawRecord is a log record whose event is left in its wire encoding, for
// readers that decode only the fields they use (a projection replaying
// millions of records). See ScanRaw.
type RawRecord struct {
	Seq  uint64
	ID   ulid.ULID
	Time time.Time
	// Hash is the chain hash stored with the record, as Record.Hash.
	Hash Hash
	// Event is the protobuf encoding of the record's eventpb.Event (empty,
	// not nil, for an empty event) or nil when the record holds none, as
	// Record.Event would be nil. It is valid only during the callback.
	Event []byte
}

// ScanRaw calls fn for every record with from <= seq <= to in order, like
// Scan, but leaves each event encoded and skips the watermill fields: no
// allocation per record. The RawRecord and its Event bytes are reused and
// valid only during the call. The envelope is checked as DecodeRecord checks
// it (a record whose envelope Scan would reject ends ScanRaw with the same
// ErrCorrupt), the event bytes are not: a caller whose decoder fails on them
// has found a corrupt record, and should say so with ErrCorrupt and the seq.
func (s *Store) ScanRaw(ctx context.Context, from, to uint64, fn func(*RawRecord) error) error {
	if from == 0 {
		from = 1
	}
	var r RawRecord
	var scratch []byte
	return s.scanRaw(ctx, from, to, func(k, v []byte) error {
		if !decodeRawFast(k, v, &r) {
			// Anything but the canonical encoding the writer produces:
			// decode it fully, so the outcome is exactly Scan's.
			full, err := DecodeRecord(k, v)
			if err != nil {
				return err
			}
			r = RawRecord{Seq: full.Seq, ID: full.ID, Time: full.Time, Hash: full.Hash}
			if full.Event != nil {
				scratch, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(scratch[:0], full.Event)
				if err != nil {
					return fmt.Errorf("%w: seq %d: %v", ErrCorrupt, full.Seq, err)
				}
				r.Event = scratch[:len(scratch):len(scratch)]
			}
		}
		return fn(&r)
	})
}

// decodeRawFast decodes the envelope of a record in the canonical encoding
// (fields in number order, each at most once, known wire types, valid
// UTF-8) into r and reports whether it could. It never reports success
// where DecodeRecord would fail or decode anything else, but for event bytes
// that do not decode: it does not look inside them.
func decodeRawFast(key, value []byte, r *RawRecord) bool {
	if len(key) != 8 || len(value) < headerSize || value[hashSize] != formatV1 {
		return false
	}
	seq := binary.BigEndian.Uint64(key)
	b := value[headerSize:]
	var (
		last            protowire.Number
		gotSeq, gotTime uint64
		id              []byte
		event           []byte
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num < last || (num == last && num != 6) {
			return false
		}
		last = num
		b = b[n:]
		switch {
		case (num == 1 || num == 3) && typ == protowire.VarintType:
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			if num == 1 {
				gotSeq = x
			} else {
				gotTime = x
			}
			b = b[n:]
		case num >= 2 && num <= 8 && num != 3 && typ == protowire.BytesType:
			x, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			b = b[n:]
			switch num {
			case 2:
				id = x
			case 4, 5:
				if !utf8.Valid(x) {
					return false
				}
			case 6:
				if !validMapEntry(x) {
					return false
				}
			case 7:
				event = nil // the oneof holds the payload
			case 8:
				event = x
			}
		default:
			return false
		}
	}
	if gotSeq != seq || len(id) != len(r.ID) {
		return false
	}
	r.Seq = seq
	copy(r.ID[:], id)
	r.Time = time.Unix(0, int64(gotTime)).UTC()
	copy(r.Hash[:], value[:hashSize])
	r.Event = event
	return true
}

// validMapEntry accepts a canonical map<string, string> entry.
func validMapEntry(b []byte) bool {
	var last protowire.Number
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || num <= last || num > 2 || typ != protowire.BytesType {
			return false
		}
		last = num
		x, m := protowire.ConsumeBytes(b[n:])
		if m < 0 || !utf8.Valid(x) {
			return false
		}
		b = b[n+m:]
	}
	return true
}
