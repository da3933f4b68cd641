package ledger

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oklog/ulid/v2"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// EventsTopic is the watermill topic that carries session events. Records on
// it hold a typed eventpb.Event and are indexed by user and session.
const EventsTopic = "sessionledger.events"

// Bucket names. Everything lives in one bbolt file so that an event, its
// index entries and consumer offsets commit in one transaction.
var (
	bucketMeta    = []byte("meta")
	bucketLog     = []byte("log")
	bucketUser    = []byte("idx_user")
	bucketSession = []byte("idx_session")
	bucketTopic   = []byte("idx_topic")
	bucketTail    = []byte("idx_tail")
	bucketOffsets = []byte("offsets")
	bucketBlobs   = []byte("blobs")

	metaMagicKey = []byte("magic")
	// metaMagic names the file format: v3 adds the Merkle tree (bucket
	// tree), the signed checkpoints (bucket checkpoints) and the log id
	// (meta log_id). A v2 file is upgraded by a read-write Open.
	metaMagic   = []byte("sessionledger/ledger/v3")
	metaMagicV2 = []byte("sessionledger/ledger/v2")
	magicPrefix = "sessionledger/ledger/v"
)

// formatVersion is the file format this build writes.
const formatVersion = 3

// Options configure Open. The zero value is usable; see each field for its
// default.
type Options struct {
	// ReadOnly opens the file without the writer; appends fail with
	// ErrReadOnly. bbolt still takes a shared lock, so a file a running hubd
	// holds cannot be opened even read-only.
	ReadOnly bool
	// LockTimeout bounds the wait for the file lock (default 1s). Past it,
	// Open returns ErrLocked.
	LockTimeout time.Duration
	// InitialMmapSize is bbolt's initial mmap size in bytes (default 1 GiB).
	// It reserves address space, not memory. Measured (BenchmarkAppendSettings,
	// docs/performance.md "bbolt settings"): with no initial map appends
	// are as fast as long as nobody holds a read transaction long, but
	// while a slow Backup runs every remap waits for it and the appends
	// behind it: half the throughput and single appends stalled for
	// 0.4-0.6 s, against about 10 ms with the 1 GiB map.
	InitialMmapSize int
	// FillPercent of the append-only log bucket (default 1.0: keys only
	// ever grow, so a split page is never written to again and may as well
	// be full). Measured: 0.5 doubles the file (696 against 323 bytes per
	// event) and costs 9-16% of append throughput.
	FillPercent float64
	// MaxBatch is the most records one group-commit transaction takes
	// (default 8192).
	MaxBatch int
	// OffsetFlushDelay is how long acknowledged consumer-group offsets may
	// wait to ride along with a record commit before the writer commits
	// them on their own (default 20ms). Acks never wait for it; a crash
	// redelivers what was acked in the last OffsetFlushDelay (delivery is
	// at least once anyway). Close writes them, including the acks of
	// subscriptions that Close ends.
	OffsetFlushDelay time.Duration
	// Now is the clock (default time.Now). Times never decrease along the
	// log even if it does.
	Now func() time.Time
	// Replica makes the store a replica of a log ordered elsewhere (a
	// cluster's shared stream): records arrive only through Replicate,
	// and Append and Publish fail with ErrReplica, so nothing local can
	// make this replica differ from the others.
	Replica bool
	// Logger receives the store's few log lines (default: discarded).
	Logger *slog.Logger
	// OnCommit, when set, is called by the writer after each transaction
	// it committed, with how long the transaction took (building its
	// pages, index merges and the Merkle tree included, writing them and
	// bbolt's fdatasyncs) and how many records it appended (0 for one that
	// carried only consumer offsets or a key/value put). It runs on the
	// writer's goroutine with the commit lock held, before the appenders
	// are answered: it must be quick (a histogram's Observe) and must not
	// call the Store.
	OnCommit func(took time.Duration, records int)
	// LogID names the log in its signed checkpoints (their origin line).
	// It is fixed when the file is created: empty means a fresh random id
	// (or the one the file has). Replicas of one log are created with the
	// same id. Opening a file whose log has another id fails. See
	// ValidLogID.
	LogID string

	// noTree skips the Merkle tree in the writer. Unexported: only the
	// append benchmarks set it, for the same-run A/B of the tree's cost; a
	// file written so has no usable tree.
	noTree bool

	// freelist is bbolt's freelist type (default: the map). Unexported:
	// only BenchmarkAppendSettings varies it. Measured: map and array are
	// equal on appends (ratios 0.98-1.05), whose freelist stays small; the
	// map is kept because it allocates without scanning the free pages,
	// which matters once index merges have freed many (the array scans
	// them on every allocation), and it is bbolt's intended default.
	freelist bolt.FreelistType
}

func (o *Options) setDefaults() {
	if o.LockTimeout <= 0 {
		o.LockTimeout = time.Second
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = 1 << 30
	}
	if o.FillPercent <= 0 || o.FillPercent > 1 {
		o.FillPercent = 1.0
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 8192
	}
	if o.OffsetFlushDelay <= 0 {
		o.OffsetFlushDelay = defaultOffsetFlushDelay
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.freelist == "" {
		o.freelist = bolt.FreelistMapType
	}
}

// Head is the last record of the log: its seq (0 for an empty log), hash,
// id and time, and the root of the Merkle tree of the log up to it.
type Head struct {
	Seq  uint64
	Hash Hash
	ID   ulid.ULID
	Time time.Time
	// Root is the Merkle tree root of records 1 to Seq (EmptyRoot for an
	// empty log; zero on a format-2 file opened read-only).
	Root Hash
}

// Store is a ledger: one bbolt file holding the log, its indexes and the
// durable offsets of consumer groups. All methods are safe for concurrent
// use. Appends are serialized through one writer goroutine that groups
// concurrent appends into shared transactions.
type Store struct {
	db   *bolt.DB
	opts Options
	path string

	mu   sync.RWMutex
	head Head
	// failed is sticky: after a failed commit the file's state on disk is
	// not trusted (fsync errors cannot be retried safely), so every later
	// append fails until the ledger is reopened.
	failed  error
	changed chan struct{} // closed and replaced after every commit that adds records, and at Close
	// headDamage is what a read-only open found wrong at the end of the
	// log (see loadHead); Verify reports it.
	headDamage *ChainError
	// treeDamage is what a read-only open found wrong with the stored
	// tree (it does not cover exactly the log); VerifyTree reports it.
	treeDamage *ChainError
	format     int    // the file's format version (formatVersion, or 2 read-only)
	logID      string // meta log_id

	// commitGate is held by the writer from the start of a commit until the
	// head has moved (or the commit failed); BackupTo holds it shared only
	// while it begins its read transaction, so the copy holds exactly the
	// durable log. Other reads need not wait: they stop at the head.
	commitGate sync.RWMutex

	// writer state, owned by the writer goroutine
	rng            *rand.ChaCha8
	afterCommit    func()       // test hook: called after bbolt's commit returned, before the head moves
	failpoint      func() error // test hook: non-nil error aborts the commit
	mergeFailpoint func() error // test hook: called after an index merge, inside its transaction
	post           postings     // the current commit's index postings
	mergePost      postings     // scratch for merges
	tailBytes      int          // bytes of posting blocks in idx_tail
	mergeThreshold int          // merge the tail once it holds this many bytes
	tree           frontier     // the Merkle tree's frontier at the head
	leafHash       leafHasher   // the writer's reused SHA-256 state for leaf hashes

	// consumer-group offsets waiting to be written with the next commit;
	// acks only touch this map, so they never wait for a disk write
	offsetMu       sync.Mutex
	pendingOffsets map[string]uint64
	offsetKick     chan struct{}
	groupsMu       sync.Mutex
	groups         map[string]*group

	commits, committed atomic.Uint64
	offsetsClamped     atomic.Uint64
	indexDropped       atomic.Uint64
	inflight           atomic.Int64 // append calls that have not got their result yet

	// subscriptions: Close ends them (quit) and waits for them (subs)
	// before the writer's final commit, so that the offset of an Ack that
	// returned before Close is among the pending ones that commit writes.
	// subsMu orders a Subscribe's subs.Add before Close's close(quit), or
	// makes the Subscribe see Closed: no Add races subs.Wait.
	subsMu sync.Mutex
	subs   sync.WaitGroup

	reqs       chan *appendReq
	quit       chan struct{} // closed by Close: appends fail, subscriptions end, the writer takes no more records
	stopWriter chan struct{} // closed by Close once the subscriptions have ended: the writer's final commit, then it exits
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error
}

// Open opens or creates the ledger at path. A missing file is created unless
// opts.ReadOnly is set. A nil opts uses the defaults.
//
// A read-only Open reports a file whose bbolt page structures are damaged
// as ErrCorrupt instead of crashing (see safeInit), as Verify does. A
// read-write Open is not guarded: bbolt reads the freelist inside its own
// Open, and a damaged freelist page makes it panic there, out of this Open
// (recovering that panic would leave bbolt's file descriptor and file lock
// held, so it is not recovered). An operator whose hubd panics in Open on
// a damaged file runs `auditq --db COPY verify` on a copy of the file (it
// opens it read-only, which never reads the freelist) to see what is
// damaged, and restores the ledger from a backup.
func Open(path string, opts *Options) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	o.setDefaults()
	if o.LogID != "" {
		if err := ValidLogID(o.LogID); err != nil {
			return nil, fmt.Errorf("open ledger %s: %w", path, err)
		}
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open ledger %s: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:         o.LockTimeout,
		ReadOnly:        o.ReadOnly,
		InitialMmapSize: o.InitialMmapSize,
		FreelistType:    o.freelist,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open ledger %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("open ledger %s: %w (%v)", path, ErrNotLedger, err)
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	s := &Store{
		db:         db,
		opts:       o,
		path:       path,
		changed:    make(chan struct{}),
		reqs:       make(chan *appendReq),
		offsetKick: make(chan struct{}, 1),
		groups:     make(map[string]*group),
		quit:       make(chan struct{}),
		stopWriter: make(chan struct{}),
		writerDone: make(chan struct{}),

		mergeThreshold: defaultMergeThreshold,
	}
	if err := s.safeInit(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	if o.ReadOnly {
		close(s.writerDone)
		return s, nil
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	s.rng = rand.NewChaCha8(seed)
	go s.writeLoop()
	return s, nil
}

// safeInit is init, reporting a file whose bbolt page structures are
// damaged (bbolt panics on an assertion, or faults on its memory map) as
// ErrCorrupt rather than crashing: a read-only Open is how auditq looks at
// a file suspected of damage. It guards only what runs after bolt.Open: a
// read-write bolt.Open has already read the freelist, unguarded (see Open).
func (s *Store) safeInit() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the file's bbolt page structures are damaged: %v", ErrCorrupt, r)
		}
	}()
	return s.init()
}

// init creates the buckets of a new file, checks the magic of an existing
// one (upgrading a format-2 file on a read-write open: buildTree) and loads
// the head and the tree's frontier.
func (s *Store) init() error {
	buckets := [][]byte{bucketLog, bucketUser, bucketSession, bucketTopic, bucketTail, bucketOffsets, bucketBlobs}
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return ErrNotLedger
		}
		magic := meta.Get(metaMagicKey)
		switch {
		case bytes.Equal(magic, metaMagic):
			s.format = formatVersion
		case bytes.Equal(magic, metaMagicV2):
			s.format = 2
		case bytes.HasPrefix(magic, []byte(magicPrefix)):
			return fmt.Errorf("%w: the file is ledger format %s, newer than this build reads (v%d): use a newer hubd or auditq",
				ErrNotLedger, magic[len(magicPrefix)-1:], formatVersion)
		default:
			return ErrNotLedger
		}
		need := buckets
		if s.format >= 3 {
			need = append(need[:len(need):len(need)], bucketTree, bucketCheckpoints)
		}
		for _, name := range need {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrNotLedger, name)
			}
		}
		if s.format < 3 {
			return nil
		}
		s.logID = string(meta.Get(metaLogIDKey))
		if err := ValidLogID(s.logID); err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if s.opts.LogID != "" && s.opts.LogID != s.logID {
			return fmt.Errorf("%w: the file's log is %q, not %q", ErrLogID, s.logID, s.opts.LogID)
		}
		return nil
	}
	var err error
	if s.opts.ReadOnly {
		err = s.db.View(check)
	} else {
		err = s.db.Update(func(tx *bolt.Tx) error {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return check(tx)
			}
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := meta.Put(metaMagicKey, metaMagic); err != nil {
				return err
			}
			s.logID = s.opts.LogID
			if s.logID == "" {
				s.logID = newLogID()
			}
			if err := meta.Put(metaLogIDKey, []byte(s.logID)); err != nil {
				return err
			}
			s.format = formatVersion
			for _, name := range append(buckets, bucketTree, bucketCheckpoints) {
				if _, err := tx.CreateBucket(name); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	if s.format < 3 && !s.opts.ReadOnly {
		if err := s.db.View(s.loadHead); err != nil {
			return err
		}
		if err := s.buildTree(s.head.Seq); err != nil {
			return err
		}
		if err := s.db.View(check); err != nil {
			return err
		}
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		s.tailBytes = tailSize(tx)
		if err := s.loadHead(tx); err != nil {
			return err
		}
		return s.loadTree(tx)
	})
	if err != nil || s.opts.ReadOnly {
		return err
	}
	return s.dropIndexPastHead()
}

// loadTree loads the writer's frontier and the head's root from the stored
// tree, which must cover exactly the log: anything else was done to the
// file from outside (the writer stores both in one transaction), and a
// read-write open refuses it, as it refuses a damaged last record.
func (s *Store) loadTree(tx *bolt.Tx) error {
	if s.format < 3 {
		return nil
	}
	b := tx.Bucket(bucketTree)
	count, err := storedCount(b)
	var n int64
	ok := false
	if err == nil {
		n, ok = treeSizeOf(count)
	}
	if err == nil && ok && uint64(n) == s.head.Seq {
		if s.tree, err = loadFrontier(n, bucketHashes{b}); err == nil {
			s.head.Root, err = s.tree.root()
		}
	}
	if err == nil && ok && uint64(n) == s.head.Seq {
		return nil
	}
	reason := fmt.Sprintf("the stored Merkle tree does not match the log (head seq %d)", s.head.Seq)
	switch {
	case err != nil:
		reason = fmt.Sprintf("the stored Merkle tree is damaged: %v", err)
	case !ok:
		reason = fmt.Sprintf("the stored Merkle tree holds %d hashes, a count no tree has", count)
	case uint64(n) > s.head.Seq:
		reason = fmt.Sprintf("the stored Merkle tree covers %d records but the log ends at seq %d: records after it were removed", n, s.head.Seq)
	case uint64(n) < s.head.Seq:
		reason = fmt.Sprintf("the stored Merkle tree covers only %d records but the log ends at seq %d: records were added from outside", n, s.head.Seq)
	}
	s.treeDamage = &ChainError{Seq: min(uint64(n), s.head.Seq) + 1, Reason: reason}
	s.head.Root = Hash{}
	if s.opts.ReadOnly {
		s.opts.Logger.Warn("ledger: "+reason+"; VerifyTree reports it", "seq", s.treeDamage.Seq)
		return nil
	}
	return fmt.Errorf("%w: %s, so no append can extend it: run `auditq --db FILE verify` on a copy and restore the ledger from a backup",
		ErrCorrupt, reason)
}

// loadHead sets the head from the last record of the log. A damaged last
// record refuses a read-write open (appending would chain onto a hash
// nobody can trust) with an error that names the seq and says what to do.
// A read-only open goes on, so that Verify can run: the head seq comes from
// the key, and Verify reports the damage (headDamage).
func (s *Store) loadHead(tx *bolt.Tx) error {
	c := tx.Bucket(bucketLog).Cursor()
	k, v := c.Last()
	if k == nil {
		return nil
	}
	if len(k) != 8 {
		// Not a seq: something else wrote the file. The head is the last
		// key that is one; the damage sits right after it.
		bad := badLogKey(k)
		for k != nil && len(k) != 8 {
			k, v = c.Prev()
		}
		var seq uint64
		if k != nil {
			seq = binary.BigEndian.Uint64(k)
		}
		s.headDamage = &ChainError{Seq: seq + 1, Reason: bad.Error() + ", after the last record"}
	}
	if k != nil {
		seq := binary.BigEndian.Uint64(k)
		// The new head must chain from its predecessor: one hash, and an
		// append would otherwise build on a record changed since.
		var prev Hash
		if pv := tx.Bucket(bucketLog).Get(seqKey(seq - 1)); seq > 1 && len(pv) >= hashSize {
			copy(prev[:], pv[:hashSize])
		}
		_, cerr := checkValue(seq, prev, v)
		r, err := DecodeRecord(k, v)
		switch {
		case err == nil && cerr == nil:
			s.head = Head{Seq: r.Seq, Hash: r.Hash, ID: r.ID, Time: r.Time}
		default:
			s.head = Head{Seq: seq}
			if len(v) >= hashSize {
				copy(s.head.Hash[:], v[:hashSize])
			}
			if ce := (*ChainError)(nil); errors.As(cerr, &ce) {
				s.headDamage = ce
			} else {
				s.headDamage = &ChainError{Seq: seq, Reason: fmt.Sprintf("the last record does not decode: %v", err)}
			}
		}
	}
	if s.headDamage == nil {
		return nil
	}
	if s.opts.ReadOnly {
		s.opts.Logger.Warn("ledger: the end of the log is damaged; Verify reports it", "seq", s.headDamage.Seq, "reason", s.headDamage.Reason)
		return nil
	}
	return fmt.Errorf("%w: the end of the log is damaged at seq %d (%s), so no append can chain onto it: "+
		"run `auditq --db FILE verify` (it opens the file read-only) to find the first bad seq, "+
		"and restore the ledger from a backup", ErrCorrupt, s.headDamage.Seq, s.headDamage.Reason)
}

// view runs fn in a read transaction. After Close it returns ErrClosed, as
// documented, instead of bbolt's "database not open".
func (s *Store) view(fn func(*bolt.Tx) error) error {
	if s.Closed() {
		return ErrClosed
	}
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Head returns the last durable record's seq, hash, id and time. It moves
// only after a commit has returned from its final fsync, and every read is
// bounded by it, so no reader sees a record that a crash could take back.
// On a read-only store it is the file's last record.
func (s *Store) Head() Head {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.head
}

// Changed returns a channel that is closed at the next commit that adds
// records (and at Close). Readers take it before they read, and wait on it
// when they found nothing new: the writer wakes them, nobody polls.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// Stats are cumulative counters since Open: the writer's, and the damage
// found loading consumer groups.
type Stats struct {
	// Commits is the number of transactions the writer committed.
	Commits uint64
	// Records is the number of records those commits appended; Records /
	// Commits is the mean group-commit batch size.
	Records uint64
	// OffsetsClamped counts consumer-group offsets found past the head of
	// the log when their group was loaded (a damaged, edited or truncated
	// file): each was logged and clamped to head+1.
	OffsetsClamped uint64
	// IndexEntriesDropped counts the index entries past the head of the log
	// that a read-write Open dropped (logged with the seqs; see
	// pasthead.go).
	IndexEntriesDropped uint64
}

// Err returns the error that stopped the ledger taking appends (a failed
// commit, which is sticky until the file is reopened), ErrClosed after
// Close, or nil while it is healthy. Health checks report it.
func (s *Store) Err() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.failed != nil {
		return s.failed
	}
	if s.Closed() {
		return ErrClosed
	}
	return nil
}

// Stats returns the writer's counters.
func (s *Store) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Records: s.committed.Load(), OffsetsClamped: s.offsetsClamped.Load(),
		IndexEntriesDropped: s.indexDropped.Load()}
}

// Close fails appends that have not been committed with ErrClosed, ends
// every subscription and waits for them, writes the offsets acknowledged
// until then (an Ack that returned before Close is durable once Close has
// returned), stops the writer and closes the file. It is idempotent and
// safe to call concurrently; every call returns the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.subsMu.Lock()
		close(s.quit) // appends fail; subscriptions end (Subscribe watches quit)
		s.subsMu.Unlock()
		// A subscription records the offset of an Ack it has not handled
		// yet as it ends (deliverOne): wait for that before the writer's
		// final commit takes the pending offsets.
		s.subs.Wait()
		close(s.stopWriter)
		<-s.writerDone
		s.mu.Lock()
		close(s.changed) // wake readers so they notice Closed
		s.changed = make(chan struct{})
		s.mu.Unlock()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// addSubscription counts a subscription's n goroutines in the ones Close
// waits for, or returns ErrClosed if Close has begun.
func (s *Store) addSubscription(n int) error {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	if s.Closed() {
		return ErrClosed
	}
	s.subs.Add(n)
	return nil
}

// Closed reports whether Close has been called.
func (s *Store) Closed() bool {
	select {
	case <-s.quit:
		return true
	default:
		return false
	}
}
