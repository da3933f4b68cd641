package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/ledger/eventpb"
)

// Stored value layout of one log record (the bbolt key is the big-endian seq):
//
//	[0:32]  SHA-256 chain hash = SHA-256(previous record's hash || value[32:])
//	[32]    record format version (formatV1)
//	[33:]   eventpb.Record, protobuf
//
// The hash covers the version byte and the whole protobuf, which carries the
// seq, so a record moved to another key fails verification too. The first
// record chains from the zero hash. Each record's hash is a fixed-size leaf,
// ready for a Merkle tree over the log.
const (
	hashSize   = sha256.Size
	headerSize = hashSize + 1
	formatV1   = 1
)

// Hash is a SHA-256 chain hash.
type Hash [hashSize]byte

// Record is one decoded log entry.
type Record struct {
	Seq  uint64
	ID   ulid.ULID
	Time time.Time
	// Hash is the chain hash stored with the record.
	Hash Hash
	// Topic is the watermill topic it was published on.
	Topic string
	// Event is set for records on the events topic.
	Event *eventpb.Event
	// UUID, Metadata and Payload are the watermill message as published
	// (Payload is nil for events, whose body is Event).
	UUID     string
	Metadata map[string]string
	Payload  []byte
}

// chainHash computes the hash of a record whose value (from the version byte
// on) is body and whose predecessor's hash is prev.
func chainHash(prev Hash, body []byte) Hash {
	h := sha256.New()
	h.Write(prev[:])
	h.Write(body)
	var out Hash
	h.Sum(out[:0])
	return out
}

// Record fields 1-3 (seq, id, time) are assigned by the writer; the rest is
// known to the caller. Protobuf's deterministic encoding writes fields in
// field-number order, so a record's encoding is the writer's fields followed
// by the caller's: callers marshal their part (encodeBody) before they queue,
// on their own goroutines, and the writer only prepends its three fields
// (appendValue). TestAppendValueMatchesProto checks that the bytes are the
// same as proto.Marshal of the whole record.
const maxWriterFields = 1 + binary.MaxVarintLen64 + 1 + 1 + 16 + 1 + binary.MaxVarintLen64

// encodeBody marshals the caller's part of a record: pb must have no seq,
// id or time.
func encodeBody(pb *eventpb.Record) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(pb)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

// eventsTopicField is Record field 4 (topic) holding EventsTopic.
var eventsTopicField = protowire.AppendString(protowire.AppendTag(nil, 4, protowire.BytesType), EventsTopic)

// encodeEventBody is encodeBody of a record on EventsTopic whose body is ev,
// without building the record: field 4 (topic), then field 8 (event).
func encodeEventBody(ev *eventpb.Event) ([]byte, error) {
	opts := proto.MarshalOptions{Deterministic: true}
	size := opts.Size(ev)
	b := make([]byte, 0, len(eventsTopicField)+1+binary.MaxVarintLen64+size)
	b = append(b, eventsTopicField...)
	b = protowire.AppendTag(b, 8, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(size))
	n := len(b)
	opts.UseCachedSize = true
	b, err := opts.MarshalAppend(b, ev)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	if len(b)-n != size {
		return nil, fmt.Errorf("encode event: %d bytes, sized %d (changed while encoding?)", len(b)-n, size)
	}
	return b, nil
}

// appendValue appends to dst the stored value of the record with the
// writer's fields seq, id, t and the caller's encoded body, chained after
// prev, and returns it with the record's hash.
func appendValue(dst []byte, prev Hash, seq uint64, id *ulid.ULID, t int64, body []byte) ([]byte, Hash) {
	start := len(dst)
	// The hash slot first holds prev, so that one SHA-256 over the value is
	// SHA-256(prev || value[32:]); then it gets the result.
	dst = append(dst, prev[:]...)
	dst = append(dst, formatV1)
	if seq != 0 {
		dst = protowire.AppendTag(dst, 1, protowire.VarintType)
		dst = protowire.AppendVarint(dst, seq)
	}
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendBytes(dst, id[:])
	if t != 0 {
		dst = protowire.AppendTag(dst, 3, protowire.VarintType)
		dst = protowire.AppendVarint(dst, uint64(t))
	}
	dst = append(dst, body...)
	h := Hash(sha256.Sum256(dst[start:]))
	copy(dst[start:], h[:])
	return dst, h
}

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// DecodeRecord decodes a stored log entry: key is the 8-byte big-endian seq
// and value the stored bytes. It checks framing and that the key and the
// record agree, not the chain (see Verify). Garbage gives ErrCorrupt, never a
// panic. The returned Record does not alias value.
func DecodeRecord(key, value []byte) (*Record, error) {
	if len(key) != 8 {
		return nil, fmt.Errorf("%w: key is %d bytes, want 8", ErrCorrupt, len(key))
	}
	seq := binary.BigEndian.Uint64(key)
	if len(value) < headerSize {
		return nil, fmt.Errorf("%w: seq %d: value is %d bytes, shorter than the %d-byte header", ErrCorrupt, seq, len(value), headerSize)
	}
	if v := value[hashSize]; v != formatV1 {
		return nil, fmt.Errorf("%w: seq %d: unknown record format version %d", ErrCorrupt, seq, v)
	}
	var pb eventpb.Record
	if err := proto.Unmarshal(value[headerSize:], &pb); err != nil {
		return nil, fmt.Errorf("%w: seq %d: %v", ErrCorrupt, seq, err)
	}
	if pb.GetSeq() != seq {
		return nil, fmt.Errorf("%w: key says seq %d, record says %d", ErrCorrupt, seq, pb.GetSeq())
	}
	var id ulid.ULID
	if len(pb.GetId()) != len(id) {
		return nil, fmt.Errorf("%w: seq %d: id is %d bytes, want %d", ErrCorrupt, seq, len(pb.GetId()), len(id))
	}
	copy(id[:], pb.GetId())
	r := &Record{
		Seq:      seq,
		ID:       id,
		Time:     time.Unix(0, pb.GetTimeUnixNano()).UTC(),
		Topic:    pb.GetTopic(),
		UUID:     pb.GetMessageUuid(),
		Metadata: pb.GetMetadata(),
		Event:    pb.GetEvent(),
		Payload:  pb.GetPayload(),
	}
	copy(r.Hash[:], value[:hashSize])
	return r, nil
}

// recordTime reads only what binary search needs.
func recordTime(key, value []byte) (time.Time, error) {
	r, err := DecodeRecord(key, value)
	if err != nil {
		return time.Time{}, err
	}
	return r.Time, nil
}
