package ledger

import (
	"encoding/binary"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// Index layout (see docs/architecture.md).
//
// Every commit writes ONE posting block into idx_tail, in the same
// transaction as its records: key = the commit's last seq (8-byte BE),
// value = one posting list per (index kind, name) that occurs in the commit.
// Keys only grow, so a commit dirties the tail of one bucket instead of one
// leaf page per distinct user and session (docs/performance.md).
//
// When the tail holds mergeThreshold bytes, a commit also merges it: in that
// same transaction it appends, per (kind, name), one chunk holding all the
// tail's postings of that name to idx_user / idx_session / idx_topic (key =
// uvarint(len) name last-seq BE) and empties idx_tail. A merge is one bbolt
// transaction, so a crash leaves either all blocks in the tail or all of
// them merged; never both, never neither. Every seq is therefore in exactly
// one place, and the merged seqs of a name are all below its tail seqs:
// readers take the merged chunks, then the tail blocks.
//
// Encoding, all integers uvarint:
//
//	posting list  = first-seq, then (seq - previous seq) for each further seq
//	block         = { kind byte, len(name), name, len(list), list }*
//	merged chunk  = one posting list; the key ends with its last seq
type indexKind byte

const (
	kindUser    indexKind = 'u'
	kindSession indexKind = 's'
	kindTopic   indexKind = 't'
)

// defaultMergeThreshold is how many bytes of posting blocks the tail may
// hold before a commit merges it. Larger merges touch each name's leaf page
// less often; a bigger tail costs readers more block parsing (only blocks at
// or after the seq a read starts from are parsed).
const defaultMergeThreshold = 256 << 10

func (k indexKind) bucket() []byte {
	switch k {
	case kindUser:
		return bucketUser
	case kindSession:
		return bucketSession
	default:
		return bucketTopic
	}
}

func (k indexKind) slot() int {
	switch k {
	case kindUser:
		return 0
	case kindSession:
		return 1
	default:
		return 2
	}
}

// postingList is the seqs of one (kind, name), increasing.
type postingList struct {
	kind indexKind
	name string
	seqs []uint64
}

// postings gathers the postings of a commit or of a merge. Its maps and
// slices are reused from one commit to the next (only the writer uses it).
type postings struct {
	names [3]map[string]int // per kind: name -> index in lists
	lists []postingList     // lists[:n] are in use
	n     int
}

func (p *postings) reset() {
	for i := range p.names {
		if p.names[i] == nil {
			p.names[i] = make(map[string]int)
		}
		clear(p.names[i])
	}
	for i := range p.lists[:p.n] {
		p.lists[i].name = ""
		p.lists[i].seqs = p.lists[i].seqs[:0]
	}
	p.n = 0
}

// add records seq under (kind, name). Seqs of one name must come in
// increasing order.
func (p *postings) add(kind indexKind, name string, seq uint64) {
	m := p.names[kind.slot()]
	i, ok := m[name]
	if !ok {
		i = p.n
		p.n++
		if i == len(p.lists) {
			p.lists = append(p.lists, postingList{})
		}
		p.lists[i].kind = kind
		p.lists[i].name = name
		m[name] = i
	}
	p.lists[i].seqs = append(p.lists[i].seqs, seq)
}

// addBytes is add for a name held in a byte slice: a name seen before costs
// no allocation.
func (p *postings) addBytes(kind indexKind, name []byte, seq uint64) error {
	m := p.names[kind.slot()]
	i, ok := m[string(name)]
	if !ok {
		p.add(kind, string(name), seq)
		return nil
	}
	l := &p.lists[i]
	if seq <= l.seqs[len(l.seqs)-1] {
		return fmt.Errorf("%w: index %c %q: seq %d after %d", ErrCorrupt, kind, name, seq, l.seqs[len(l.seqs)-1])
	}
	l.seqs = append(l.seqs, seq)
	return nil
}

// appendBlock appends the block encoding of p to dst.
func (p *postings) appendBlock(dst []byte) []byte {
	var list []byte
	for _, l := range p.lists[:p.n] {
		list = appendList(list[:0], l.seqs)
		dst = append(dst, byte(l.kind))
		dst = binary.AppendUvarint(dst, uint64(len(l.name)))
		dst = append(dst, l.name...)
		dst = binary.AppendUvarint(dst, uint64(len(list)))
		dst = append(dst, list...)
	}
	return dst
}

func appendList(dst []byte, seqs []uint64) []byte {
	prev := uint64(0)
	for _, s := range seqs {
		dst = binary.AppendUvarint(dst, s-prev)
		prev = s
	}
	return dst
}

// walkList calls fn for each seq of an encoded posting list, in order. It
// stops early, without an error, when fn returns false.
func walkList(list []byte, fn func(seq uint64) bool) error {
	var seq uint64
	for len(list) > 0 {
		d, n := binary.Uvarint(list)
		if n <= 0 {
			return fmt.Errorf("%w: malformed posting list", ErrCorrupt)
		}
		list = list[n:]
		if d == 0 || seq+d < seq {
			return fmt.Errorf("%w: posting list does not increase", ErrCorrupt)
		}
		seq += d
		if !fn(seq) {
			return nil
		}
	}
	return nil
}

// walkBlock calls fn for each (kind, name, encoded list) of a block. The
// slices alias block.
func walkBlock(block []byte, fn func(kind indexKind, name, list []byte) error) error {
	for len(block) > 0 {
		kind := indexKind(block[0])
		if kind != kindUser && kind != kindSession && kind != kindTopic {
			return fmt.Errorf("%w: posting block: unknown index kind %#x", ErrCorrupt, block[0])
		}
		block = block[1:]
		name, rest, ok := cutLenPrefixed(block)
		if !ok {
			return fmt.Errorf("%w: posting block: malformed name", ErrCorrupt)
		}
		list, rest, ok := cutLenPrefixed(rest)
		if !ok || len(list) == 0 {
			return fmt.Errorf("%w: posting block: malformed list", ErrCorrupt)
		}
		block = rest
		if err := fn(kind, name, list); err != nil {
			return err
		}
	}
	return nil
}

func cutLenPrefixed(b []byte) (field, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	return b[w : w+int(n)], b[w+int(n):], true
}

// indexSeqs appends to dst, in increasing order, the seqs of (kind, name)
// with from <= seq <= to (to == 0: no bound), at most limit of them, as one
// read transaction sees them: merged chunks first, then tail blocks.
func indexSeqs(tx *bolt.Tx, kind indexKind, name string, from, to uint64, limit int, dst []uint64) ([]uint64, error) {
	var last uint64
	var werr error
	full := false
	take := func(seq uint64) bool {
		if seq < from {
			return true
		}
		if to != 0 && seq > to || len(dst) == limit {
			full = true
			return false
		}
		if seq <= last {
			werr = fmt.Errorf("%w: index %c %q: seq %d after %d", ErrCorrupt, kind, name, seq, last)
			return false
		}
		last = seq
		dst = append(dst, seq)
		return true
	}

	prefix := indexPrefix(name)
	c := tx.Bucket(kind.bucket()).Cursor()
	for k, v := c.Seek(indexKey(name, from)); k != nil; k, v = c.Next() {
		if len(k) != len(prefix)+8 || string(k[:len(prefix)]) != string(prefix) {
			break
		}
		var seen uint64
		err := walkList(v, func(seq uint64) bool {
			seen = seq
			return take(seq)
		})
		if err != nil {
			return dst, err
		}
		if werr != nil || full {
			return dst, werr
		}
		if keySeq := binary.BigEndian.Uint64(k[len(prefix):]); seen != keySeq {
			return dst, fmt.Errorf("%w: index %c %q: chunk keyed %d ends at %d", ErrCorrupt, kind, name, keySeq, seen)
		}
	}

	c = tx.Bucket(bucketTail).Cursor()
	for k, v := c.Seek(seqKey(from)); k != nil; k, v = c.Next() {
		err := walkBlock(v, func(bk indexKind, bname, list []byte) error {
			if bk != kind || string(bname) != name {
				return nil
			}
			if err := walkList(list, take); err != nil {
				return err
			}
			if werr == nil && !full {
				return nil
			}
			return errStopBlocks
		})
		if err == errStopBlocks {
			return dst, werr
		}
		if err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// errStopBlocks ends a walk over tail blocks early; never returned.
var errStopBlocks = fmt.Errorf("stop")

// mergeTail moves every posting block of the tail into the merged indexes
// and empties the tail, inside tx. p is scratch space.
//
// A name too long for a bbolt key (possible only in a file written before
// names were capped at MaxNameLen) is dropped from the index with a
// warning rather than failing the merge: a failed merge fails its commit,
// and since the tail would still hold the name, every commit after it, so
// one such name would stop the ledger for good. Its records stay in the log.
func mergeTail(tx *bolt.Tx, p *postings, log *slog.Logger) error {
	p.reset()
	c := tx.Bucket(bucketTail).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		err := walkBlock(v, func(kind indexKind, name, list []byte) error {
			var aerr error
			werr := walkList(list, func(seq uint64) bool {
				aerr = p.addBytes(kind, name, seq)
				return aerr == nil
			})
			if werr != nil {
				return werr
			}
			return aerr
		})
		if err != nil {
			return fmt.Errorf("merge index block %d: %w", binary.BigEndian.Uint64(k), err)
		}
	}
	var buckets [3]*bolt.Bucket
	var val []byte
	for _, l := range p.lists[:p.n] {
		b := buckets[l.kind.slot()]
		if b == nil {
			b = tx.Bucket(l.kind.bucket())
			buckets[l.kind.slot()] = b
		}
		key := indexKey(l.name, l.seqs[len(l.seqs)-1])
		if len(key) > bolt.MaxKeySize {
			log.Warn("ledger: index name too long for a bbolt key, left out of the index (its records stay in the log)",
				"index", string(l.kind), "name_bytes", len(l.name), "name_prefix", l.name[:64], "seqs", len(l.seqs), "first_seq", l.seqs[0])
			continue
		}
		// The value must stay valid until the transaction ends.
		val = appendList(val[len(val):], l.seqs)
		if err := b.Put(key, val); err != nil {
			return err
		}
	}
	// Dropping the bucket frees its pages in one go; deleting each key
	// would rebalance the tree block by block.
	if err := tx.DeleteBucket(bucketTail); err != nil {
		return err
	}
	_, err := tx.CreateBucket(bucketTail)
	return err
}

// tailSize is the number of bytes of posting blocks in the tail.
func tailSize(tx *bolt.Tx) int {
	n := 0
	c := tx.Bucket(bucketTail).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n += len(v)
	}
	return n
}

// indexKey is uvarint(len(name)) || name || seq: unambiguous for any name,
// and sorted by seq within a name.
func indexKey(name string, seq uint64) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(name)+8)
	k = binary.AppendUvarint(k, uint64(len(name)))
	k = append(k, name...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func indexPrefix(name string) []byte {
	k := make([]byte, 0, binary.MaxVarintLen64+len(name))
	k = binary.AppendUvarint(k, uint64(len(name)))
	return append(k, name...)
}
