package ledger

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// A log whose newest records are gone (a truncated tail, a damaged or
// edited file) can still hold index entries for them, and consumer
// offsets past its head. Appends then reuse those seqs: an index would
// name the new record under the old one's user, session and topic, and a
// reader meets the same seq twice and stops with ErrCorrupt (a subscriber
// ends, and the projections with it). A read-write Open therefore drops
// the index entries past the head, with a warning naming the seqs (Stats
// counts them); a consumer offset past the head is clamped when its group
// is loaded (Store.group).

// indexPastHead returns the highest seq the indexes hold, if it is past
// head, and 0 otherwise. It is cheap: every record has a topic entry, so
// the merged indexes reach no further than the topic index (few keys),
// and the tail's keys are its commits' last seqs.
func indexPastHead(tx *bolt.Tx, head uint64) uint64 {
	var top uint64
	if k, _ := tx.Bucket(bucketTail).Cursor().Last(); len(k) == 8 {
		top = binary.BigEndian.Uint64(k)
	}
	c := tx.Bucket(bucketTopic).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) >= 8 {
			top = max(top, binary.BigEndian.Uint64(k[len(k)-8:]))
		}
	}
	if top <= head {
		return 0
	}
	return top
}

// dropIndexPastHead removes the index entries past the head, if there are
// any (a read-write Open, before the writer starts).
func (s *Store) dropIndexPastHead() error {
	head := s.head.Seq
	var top uint64
	if err := s.db.View(func(tx *bolt.Tx) error { top = indexPastHead(tx, head); return nil }); err != nil || top == 0 {
		return err
	}
	var dropped uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		dropped = 0
		n, err := trimTail(tx, head)
		if err != nil {
			return err
		}
		dropped += n
		for _, b := range [][]byte{bucketUser, bucketSession, bucketTopic} {
			n, err := trimMerged(tx.Bucket(b), head)
			if err != nil {
				return err
			}
			dropped += n
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drop the index entries past the head (seq %d; the indexes reach seq %d): %w", head, top, err)
	}
	s.indexDropped.Add(dropped)
	if err := s.db.View(func(tx *bolt.Tx) error { s.tailBytes = tailSize(tx); return nil }); err != nil {
		return err
	}
	s.opts.Logger.Warn("ledger: the indexes reached past the head of the log (its newest records are gone: a truncated, damaged or edited file); dropped the entries past the head",
		"head", head, "index_reached", top, "entries_dropped", dropped)
	return nil
}

// trimTail rewrites the tail blocks past head without their postings past
// it. Only the first such block can keep any: a block holds the seqs after
// the previous block's key up to its own.
func trimTail(tx *bolt.Tx, head uint64) (dropped uint64, err error) {
	tail := tx.Bucket(bucketTail)
	var keys [][]byte
	var p postings
	p.reset()
	c := tail.Cursor()
	for k, v := c.Seek(seqKey(head + 1)); k != nil; k, v = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
		err := walkBlock(v, func(kind indexKind, name, list []byte) error {
			var aerr error
			werr := walkList(list, func(seq uint64) bool {
				if seq > head {
					dropped++
					return true
				}
				aerr = p.addBytes(kind, name, seq)
				return aerr == nil
			})
			if werr != nil {
				return werr
			}
			return aerr
		})
		if err != nil {
			return 0, fmt.Errorf("index block %d: %w", binary.BigEndian.Uint64(k), err)
		}
	}
	var last uint64
	for _, l := range p.lists[:p.n] {
		last = max(last, l.seqs[len(l.seqs)-1])
	}
	for _, k := range keys {
		if err := tail.Delete(k); err != nil {
			return 0, err
		}
	}
	if p.n > 0 {
		if err := tail.Put(seqKey(last), p.appendBlock(nil)); err != nil {
			return 0, err
		}
	}
	return dropped, nil
}

// trimMerged rewrites the merged chunks of b that end past head without
// their postings past it (a chunk's key ends with its last seq).
func trimMerged(b *bolt.Bucket, head uint64) (dropped uint64, err error) {
	type chunk struct {
		key  []byte
		keep []uint64
	}
	var past []chunk
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) < 8 || binary.BigEndian.Uint64(k[len(k)-8:]) <= head {
			continue
		}
		ch := chunk{key: append([]byte(nil), k...)}
		if err := walkList(v, func(seq uint64) bool {
			if seq <= head {
				ch.keep = append(ch.keep, seq)
			} else {
				dropped++
			}
			return true
		}); err != nil {
			return 0, fmt.Errorf("index chunk %q: %w", k, err)
		}
		past = append(past, ch)
	}
	for _, ch := range past {
		if err := b.Delete(ch.key); err != nil {
			return 0, err
		}
		if len(ch.keep) == 0 {
			continue
		}
		key := binary.BigEndian.AppendUint64(append([]byte(nil), ch.key[:len(ch.key)-8]...), ch.keep[len(ch.keep)-1])
		if err := b.Put(key, appendList(nil, ch.keep)); err != nil {
			return 0, err
		}
	}
	return dropped, nil
}
