package ledger

import (
	"errors"
	"fmt"
)

var (
	// ErrClosed is returned by every read and write on a Store after Close,
	// including appends that were still waiting for a commit when Close
	// began.
	ErrClosed = errors.New("ledger closed")

	// ErrLocked is returned by Open when another process (usually a running
	// hubd) holds the file lock. Read a live ledger through hubd's audit API
	// or from a backup instead.
	ErrLocked = errors.New("ledger file is locked by another process (is hubd running? use its audit API or a backup)")

	// ErrNotLedger is returned by Open when the file is a bbolt database
	// (or something else) that is not a sessionledger ledger.
	ErrNotLedger = errors.New("not a sessionledger ledger file")

	// ErrReplica is returned by Append and Publish on a Store opened as a
	// replica (Options.Replica): its records come from Replicate only.
	ErrReplica = errors.New("ledger is a replica of a shared log; append through the cluster")
	// ErrNotNext is returned by Replicate for a record that is not the
	// next seq after the head: a replica takes the ordering log's records
	// in order, without gaps.
	ErrNotNext = errors.New("not the next seq")
	// ErrReadOnly is returned by writes on a Store opened read-only.
	ErrReadOnly = errors.New("ledger opened read-only")

	// ErrInvalidEvent is returned by Append and Publish for an event the
	// ledger refuses to store (no type, a name over MaxNameLen, for
	// instance). Nothing of the batch is written.
	ErrInvalidEvent = errors.New("invalid event")

	// ErrNameTooLong is returned, wrapped, for a user, session, device,
	// topic, consumer-group name or blob key longer than MaxNameLen bytes:
	// by Append and Publish (which wrap ErrInvalidEvent too), Subscribe and
	// PutBlob. Nothing is written.
	ErrNameTooLong = errors.New("name too long")

	// ErrCorrupt is returned by the record decoder for bytes that are not a
	// well-formed record. Verify reports the sequence it was found at.
	ErrCorrupt = errors.New("corrupt record")

	// ErrNoTree is returned by the tree's reads and proofs on a format-2
	// file (from before the Merkle tree) opened read-only: a read-write
	// Open (hubd) builds the tree and upgrades the file.
	ErrNoTree = errors.New("ledger file is format v2, from before the Merkle tree: hubd builds the tree when it opens the file")

	// ErrLogID is returned by Open when Options.LogID names another log
	// than the one the file holds.
	ErrLogID = errors.New("ledger file holds another log")

	// ErrOutcomeUnknown is returned, wrapped, by a shared log's publisher
	// (cluster mode) that sent a message and heard nothing back: the log's
	// leader may hold it and commit it once its quorum is back, or drop
	// it. The caller must assume neither that the action took effect nor
	// that it did not.
	ErrOutcomeUnknown = errors.New("outcome unknown: the log did not answer and may still record it")

	// ErrNotFound is returned by Get for a sequence number that is not in
	// the log.
	ErrNotFound = errors.New("no such record")
)

// ChainError is returned by Verify when the log is not intact: Seq is the
// first sequence number that does not check out and Reason says why.
type ChainError struct {
	Seq    uint64
	Reason string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("chain broken at seq %d: %s", e.Seq, e.Reason)
}
