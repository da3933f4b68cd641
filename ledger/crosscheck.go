package ledger

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"strconv"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/protobuf/encoding/protowire"
)

// Finding is one entry of the ledger file, other than the log itself, that
// names a seq the log contradicts: one past the head (the records it
// points at were removed) or one whose record says otherwise.
type Finding struct {
	// Where names the entry: `idx_user "bob"`, `consumer group "g" of
	// topic "t"`, `signed checkpoint of size 227`, ...
	Where string
	// Seq is the seq it names.
	Seq uint64
	// Problem says what is wrong.
	Problem string
}

// String is the finding as one line: where, seq, problem.
func (f Finding) String() string { return fmt.Sprintf("%s: seq %d: %s", f.Where, f.Seq, f.Problem) }

// CrossCheck compares with the log everything else in the file that names
// a seq: the index postings (each must point at or before the head, at a
// record about that user, session or topic, and every record must be
// posted), the consumer groups' offsets (at most the head plus one) and the
// signed checkpoints stored in the file (at most the head, with the root of
// the stored tree there). It returns at most limit findings (0: 100).
// Deleting the newest records leaves a shorter chain that verifies, but
// unless the editor also rewrote all of these, they still point past it.
//
// The postings are compared with the records by summing a hash of every
// (index, name, seq) on both sides, in one pass over each; only when the
// sums differ does it look the postings' records up one by one to name the
// difference.
func (s *Store) CrossCheck(ctx context.Context, limit int) ([]Finding, error) {
	return s.crossCheck(ctx, nil, limit)
}

// CrossCheckAfter is CrossCheck after tc, a VerifyTree of this store: it
// takes the records' side of the postings comparison from tc (the tree
// builder summed it while it read the log), so the log is read once for
// both. A tc that could not read the whole log is not used.
func (s *Store) CrossCheckAfter(ctx context.Context, tc *TreeCheck, limit int) ([]Finding, error) {
	if tc == nil || tc.names == nil || tc.Checked != tc.Head.Seq {
		tc = nil
	}
	return s.crossCheck(ctx, tc, limit)
}

// nameSums is the records' side of CrossCheck's postings comparison: per
// index, the sum of postingHash over every (name, seq) the records 1 to
// head are indexed under.
type nameSums struct {
	seed maphash.Seed
	sums [3]uint64
}

// add adds the record at seq whose leaf data is leaf.
func (n *nameSums) add(seq uint64, leaf []byte) {
	topic, user, session, ok := leafNames(leaf)
	if !ok {
		return // Verify reports an undecodable record
	}
	n.sums[kindTopic.slot()] += postingHash(n.seed, kindTopic, topic, seq)
	if len(user) > 0 {
		n.sums[kindUser.slot()] += postingHash(n.seed, kindUser, user, seq)
	}
	if len(session) > 0 {
		n.sums[kindSession.slot()] += postingHash(n.seed, kindSession, session, seq)
	}
}

func (s *Store) crossCheck(ctx context.Context, tc *TreeCheck, limit int) ([]Finding, error) {
	if limit <= 0 {
		limit = 100
	}
	head := s.Head().Seq
	if tc != nil {
		head = tc.Head.Seq
	}
	var out []Finding
	add := func(f Finding) bool {
		if len(out) < limit {
			out = append(out, f)
		}
		return len(out) < limit
	}
	names := &nameSums{seed: maphash.MakeSeed()}
	if tc != nil {
		names = tc.names
	}
	seed := names.seed
	var posted [3]uint64
	// Postings past the head the check began at: on a live store, most are
	// records appended since. The ones still past the head at the end are
	// findings (the head only grows).
	type past struct {
		kind indexKind
		name string
		seq  uint64
	}
	var pastHead []past
	seen := map[string]bool{}
	err := s.walkPostings(ctx, func(kind indexKind, name []byte, seq uint64) {
		if seq > head {
			key := string(rune(kind)) + string(name)
			if !seen[key] {
				seen[key] = true
				pastHead = append(pastHead, past{kind, string(name), seq})
			}
			return
		}
		posted[kind.slot()] += postingHash(seed, kind, name, seq)
	})
	if err != nil {
		return out, err
	}
	now := s.settledHead()
	for _, p := range pastHead {
		if p.seq > now {
			add(Finding{Where: indexWhere(p.kind, []byte(p.name)), Seq: p.seq, Problem: fmt.Sprintf("points past the log's head (seq %d): the records it indexes were removed", now)})
		}
	}
	if tc == nil {
		err = s.scanRaw(ctx, 1, head, func(k, v []byte) error {
			if len(v) >= hashSize {
				names.add(binary.BigEndian.Uint64(k), leafData(v))
			}
			return nil
		})
		if err != nil {
			return out, err
		}
	}
	logged := names.sums
	for _, kind := range []indexKind{kindUser, kindSession, kindTopic} {
		if posted[kind.slot()] != logged[kind.slot()] && len(out) < limit {
			if err := s.namePostingDifferences(ctx, kind, head, add); err != nil {
				return out, err
			}
		}
	}
	if len(out) >= limit {
		return out, nil
	}
	// Offsets and stored checkpoints past the head the check began at are
	// compared with the settled head afterwards, as the postings are.
	var later []Finding
	err = s.view(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketOffsets).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return nil
			}
			if next := binary.BigEndian.Uint64(v); next > head+1 {
				topic, group, _ := cutLenPrefixed(k)
				later = append(later, Finding{Where: fmt.Sprintf("consumer group %q of topic %q", group, topic), Seq: next - 1,
					Problem: "has read up to seq %d, past the log's head (seq %d): the records it read were removed"})
			}
			return nil
		})
		if err != nil || s.format < 3 {
			return err
		}
		return tx.Bucket(bucketCheckpoints).ForEach(func(k, v []byte) error {
			cp, err := decodeCheckpoint(k, v)
			if err != nil {
				add(Finding{Where: "signed checkpoints", Problem: err.Error()})
				return nil
			}
			where := "signed checkpoint of size " + strconv.FormatUint(cp.Size, 10)
			if cp.Size > head {
				later = append(later, Finding{Where: where, Seq: cp.Size, Problem: "is past the log's head (seq %[2]d): records after it were removed"})
				return nil
			}
			root, err := storedRoot(cp.Size, tx)
			if err != nil {
				add(Finding{Where: where, Seq: cp.Size, Problem: fmt.Sprintf("cannot be compared: %v", err)})
			} else if root != cp.Root {
				add(Finding{Where: where, Seq: cp.Size, Problem: fmt.Sprintf("signs root %x, but the log's tree at that size has root %x: a record at or before it was changed", cp.Root[:8], root[:8])})
			}
			return nil
		})
	})
	if err != nil {
		return out, err
	}
	now = s.settledHead()
	for _, f := range later {
		if f.Seq > now {
			f.Problem = fmt.Sprintf(f.Problem, f.Seq, now)
			add(f)
		}
	}
	return out, nil
}

// settledHead is the head once the commit in progress, if any, has moved
// it or failed: a read transaction may show a commit before its fsync (see
// scanRaw), and what it showed is then at or before this head.
func (s *Store) settledHead() uint64 {
	s.commitGate.RLock()
	defer s.commitGate.RUnlock()
	return s.Head().Seq
}

func indexWhere(kind indexKind, name []byte) string {
	return fmt.Sprintf("%s %q", kind.bucket(), name)
}

func postingHash(seed maphash.Seed, kind indexKind, name []byte, seq uint64) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteByte(byte(kind))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	h.Write(b[:])
	h.Write(name)
	return h.Sum64()
}

// walkPostings calls fn for every posting of every index, merged chunks
// and tail blocks, hopping between short read transactions.
func (s *Store) walkPostings(ctx context.Context, fn func(kind indexKind, name []byte, seq uint64)) error {
	for _, kind := range []indexKind{kindUser, kindSession, kindTopic} {
		err := s.walkBucket(ctx, kind.bucket(), func(k, v []byte) error {
			name, rest, ok := cutLenPrefixed(k)
			if !ok || len(rest) != 8 {
				return fmt.Errorf("%w: %s: malformed key %x", ErrCorrupt, kind.bucket(), k)
			}
			return walkList(v, func(seq uint64) bool { fn(kind, name, seq); return true })
		})
		if err != nil {
			return err
		}
	}
	return s.walkBucket(ctx, bucketTail, func(_, v []byte) error {
		return walkBlock(v, func(kind indexKind, name, list []byte) error {
			return walkList(list, func(seq uint64) bool { fn(kind, name, seq); return true })
		})
	})
}

// walkBucket calls fn for every key of a bucket, scanChunk keys per read
// transaction. The slices are valid only during the call.
func (s *Store) walkBucket(ctx context.Context, bucket []byte, fn func(k, v []byte) error) error {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		done := false
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); k != nil && bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for n := 0; ; k, v = c.Next() {
				if k == nil {
					done = true
					return nil
				}
				if n == scanChunk {
					return nil
				}
				if err := fn(k, v); err != nil {
					return err
				}
				after = append(after[:0], k...)
				n++
			}
		})
		if err != nil || done {
			return err
		}
	}
}

// namePostingDifferences looks up the record of every posting of kind and
// reports the postings whose record is about another name, and the records
// that no posting of kind names.
func (s *Store) namePostingDifferences(ctx context.Context, kind indexKind, head uint64, add func(Finding) bool) error {
	seen := make([]uint64, head/64+1) // bit seq: posted
	type posting struct {
		name []byte
		seq  uint64
	}
	var batch []posting
	more := true
	check := func() error {
		err := s.view(func(tx *bolt.Tx) error {
			log := tx.Bucket(bucketLog)
			for _, p := range batch {
				where := indexWhere(kind, p.name)
				if seen[p.seq/64]&(1<<(p.seq%64)) != 0 {
					more = more && add(Finding{Where: where, Seq: p.seq, Problem: "posts the seq a second time"})
					continue
				}
				seen[p.seq/64] |= 1 << (p.seq % 64)
				v := log.Get(seqKey(p.seq))
				if v == nil {
					more = more && add(Finding{Where: where, Seq: p.seq, Problem: "points at a record missing from the log"})
					continue
				}
				if _, _, _, ok := recordNames(v); !ok {
					more = more && add(Finding{Where: where, Seq: p.seq, Problem: "points at a record that does not decode"})
				} else if got := nameOf(kind, v); !bytes.Equal(got, p.name) {
					more = more && add(Finding{Where: where, Seq: p.seq, Problem: fmt.Sprintf("points at a record whose %s is %q", kindNoun(kind), got)})
				}
			}
			return nil
		})
		batch = batch[:0]
		return err
	}
	var cerr error
	err := s.walkPostings(ctx, func(k indexKind, name []byte, seq uint64) {
		if k != kind || seq > head || cerr != nil || !more {
			return
		}
		batch = append(batch, posting{append([]byte(nil), name...), seq})
		if len(batch) == scanChunk {
			cerr = check()
		}
	})
	if err == nil {
		err = cerr
	}
	if err == nil {
		err = check()
	}
	if err != nil || !more {
		return err
	}
	return s.scanRaw(ctx, 1, head, func(k, v []byte) error {
		seq := binary.BigEndian.Uint64(k)
		if name := nameOf(kind, v); len(name) > 0 && seen[seq/64]&(1<<(seq%64)) == 0 {
			if !add(Finding{Where: string(kind.bucket()), Seq: seq, Problem: fmt.Sprintf("has no posting for the record, whose %s is %q", kindNoun(kind), name)}) {
				return ErrStop
			}
		}
		return nil
	})
}

func kindNoun(kind indexKind) string {
	switch kind {
	case kindUser:
		return "user"
	case kindSession:
		return "session"
	default:
		return "topic"
	}
}

func nameOf(kind indexKind, v []byte) []byte {
	topic, user, session, _ := recordNames(v)
	switch kind {
	case kindUser:
		return user
	case kindSession:
		return session
	default:
		return topic
	}
}

// recordNames reads the names a stored record is indexed under: its topic
// (Record field 4) and its event's user and session (Event fields 2 and
// 4, in Record field 8), without decoding the rest.
func recordNames(v []byte) (topic, user, session []byte, ok bool) {
	if len(v) < hashSize {
		return nil, nil, nil, false
	}
	return leafNames(leafData(v))
}

// leafNames is recordNames of a record's leaf data.
func leafNames(leaf []byte) (topic, user, session []byte, ok bool) {
	if len(leaf) < 1 {
		return nil, nil, nil, false
	}
	var event []byte
	if !eachBytesField(leaf[1:], func(num protowire.Number, b []byte) {
		switch num {
		case 4:
			topic = b
		case 8:
			event = b
		}
	}) {
		return nil, nil, nil, false
	}
	if event != nil && !eachBytesField(event, func(num protowire.Number, b []byte) {
		switch num {
		case 2:
			user = b
		case 4:
			session = b
		}
	}) {
		return nil, nil, nil, false
	}
	return topic, user, session, true
}

// eachBytesField calls fn for each length-delimited field of a protobuf
// message, and reports whether the message parsed.
func eachBytesField(b []byte, fn func(protowire.Number, []byte)) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		if typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			fn(num, v)
			b = b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// storedRoot is the root of the stored tree of size records in tx.
func storedRoot(size uint64, tx *bolt.Tx) (Hash, error) {
	h, err := tlog.TreeHash(int64(size), bucketHashes{tx.Bucket(bucketTree)})
	return Hash(h), err
}
