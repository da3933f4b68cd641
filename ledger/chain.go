package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oklog/ulid/v2"
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

// encodeValue lays out a new stored value for pb chained after prev and
// returns it with its hash. The value is freshly allocated: bbolt needs it
// to stay valid until the transaction ends.
func encodeValue(prev Hash, pb *eventpb.Record) ([]byte, Hash, error) {
	buf := make([]byte, headerSize, headerSize+proto.Size(pb))
	buf[hashSize] = formatV1
	var err error
	buf, err = proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, pb)
	if err != nil {
		return nil, Hash{}, fmt.Errorf("encode record %d: %w", pb.GetSeq(), err)
	}
	h := chainHash(prev, buf[hashSize:])
	copy(buf[:hashSize], h[:])
	return buf, h, nil
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
