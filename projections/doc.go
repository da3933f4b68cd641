// Package projections derives the live session table and the ban state from
// the ledger. The hub enforces kicks, bans and the single-device policy from
// them alone, and auditq answers "who was connected at T" with them.
//
// # State
//
// State is a pure, deterministic reducer: State.Apply takes the next record
// and returns a Change (what started, what ended, which sessions must now
// end and why). It reads no clock: ban expiry is judged against the record's
// time during Apply and against an explicit now in BanAt and Bans. Ended
// sessions leave the table, so memory grows with live sessions and active
// bans, not with the length of the log; history is the ledger's job.
// Anomalies (disconnects of unknown sessions, duplicate terminal events,
// unknown event types) are counted in Counters and skipped.
//
// # Pending ends
//
// A kick_requested event marks the live sessions it targets; a user_banned
// event marks the user's sessions; a connect whose event lists sessions it
// supersedes (State.Supersedes computes them under a Policy; the hub records
// the answer) marks those. A mark stays until the session's
// session_disconnected event; the first mark wins.
//
// # Runner
//
// Runner keeps a State current: it loads the checkpoint stored in the
// ledger file's blob bucket (key CheckpointKey), replays the tail straight
// from the log with the fast decoder, then follows the events topic through
// the ledger's watermill Subscriber as a consumer group. WaitApplied tells a
// caller when its record has been applied; OnChange sees every change
// applied after Start's replay. Checkpoints are written at the end of Start,
// every CheckpointEvery records, every CheckpointInterval and on Close, by a
// goroutine of their own that applying never waits for. A stored snapshot
// carries the hash of the record at its seq; one of another SnapshotVersion,
// or that the log does not match, is ignored and the state rebuilt from the
// log. Rebuild does a full rebuild on demand and persists it. Counters,
// Stats and Err are for metrics and health checks.
//
// # Time travel
//
// The Runner also stores a snapshot after every multiple of SnapshotEvery.
// StateAt and StateAtTime load the nearest usable snapshot (or the
// checkpoint, if nearer) at or before the target and replay the rest;
// WriteSnapshots fills snapshots into a ledger that has none, or none
// usable. StateAt and StateAtTime only read the log, so they work on a
// backup.
//
// # Concurrency
//
// State is not safe for concurrent use. Runner is: Read gives fn the state
// under a read lock, and only Apply takes the write lock. A Runner starts
// once; Close stops its follow loop (once the OnChange call in progress
// returns) and waits at most Config.CloseTimeout for the checkpoint and
// snapshot writes still queued; past that it returns the timeout and the
// write in progress finishes on its own.
package projections
