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
// from the log, then follows the events topic through the ledger's watermill
// Subscriber as a consumer group. WaitApplied tells a caller when its record
// has been applied. Checkpoints are written every CheckpointEvery records,
// every CheckpointInterval and on Close; a checkpoint of another
// SnapshotVersion is ignored and the state rebuilt from the log.
//
// # Time travel
//
// The Runner also stores a snapshot after every multiple of SnapshotEvery.
// StateAt and StateAtTime load the nearest snapshot at or before the target
// and replay the rest; WriteSnapshots fills snapshots into a ledger that has
// none. They only read the log, so they work on a backup.
//
// # Concurrency
//
// State is not safe for concurrent use. Runner is: Read gives fn the state
// under a read lock.
package projections
