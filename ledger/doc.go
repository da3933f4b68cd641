// Package ledger is sessionledger's event log: one bbolt file holding a
// dense, totally ordered, hash-chained sequence of records, indexes by user,
// session and topic, durable consumer-group offsets and projection
// checkpoints.
//
// # Writing
//
// Store.Append (and the watermill Publisher, which uses the same path)
// returns only once its records are fsync'd. One writer goroutine takes every
// append that is waiting and commits them in one transaction (group commit),
// assigning under its lock the seq, a ULID and a time that never goes back,
// so id order == seq order == time order. A failed commit fails every append
// of its batch and makes the store refuse later appends (ErrClosed after
// Close): nothing is dropped silently.
//
// # Reading
//
// Get, Scan (seq range), ScanTime (time range, by binary search over seq),
// ByUser, BySession, ByTopic (through indexes written in the record's own
// transaction), Head, Verify (recomputes the chain and names the first bad
// seq), VerifyTree and CrossCheck (the whole file), TreeRoot,
// InclusionProof, ConsistencyProof, Backup (a consistent copy while appends
// go on). The watermill
// Subscriber delivers a topic in order, at least once, with durable
// consumer-group offsets; it is woken by the writer on every commit that
// adds records.
//
// Every read sees only durable records: it is bounded by Head, which moves
// only after a commit's last fsync returned (bbolt itself shows a commit to
// new readers a moment before that). So no reader, and no projection fed by
// the Subscriber, acts on a record a crash could still take back.
//
// # Concurrency
//
// All methods of Store, Publisher and Subscriber are safe for concurrent
// use. After Close, every read and write on a Store returns ErrClosed;
// Close ends the subscriptions and writes the offsets they acknowledged. bbolt locks the file: while one process has it open, no
// other process can open it, not even read-only (Open returns ErrLocked
// after Options.LockTimeout).
//
// # Caveats
//
// The hash chain proves the log self-consistent, not authentic: whoever can
// write the file can rewrite it and recompute the chain, or delete the
// newest records, which leaves a shorter chain that verifies. The Merkle
// tree (tree.go: RFC 6962 over the records' bytes, kept in the records'
// transaction) is what signed checkpoints (package ledger/checkpoint) commit
// to; kept off the host, they catch such a rewrite (VerifyTree,
// docs/verification.md). CrossCheck catches an editor who forgot the rest of
// the file.
// What such a file still holds past its head is handled, never waited
// for: a read-write Open drops index entries past the head, and a
// consumer offset past it is clamped when its group is loaded; both are
// logged with their seqs and counted in Stats.
//
// Names that become bbolt keys (user, session, device, topic, consumer
// group, blob key) are limited to MaxNameLen bytes.
package ledger
