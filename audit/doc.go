// Package audit is the query engine behind auditq and hubd's Audit gRPC
// service: event filters, who was connected and who was banned at a time,
// readable timelines, step-by-step incident replay, hash-chain
// verification, export and statistics, all over a ledger.
//
// # Sources
//
// Engine answers queries over a *ledger.Store: a file opened read-only, a
// backup, or the store a running hubd holds. Server exposes an Engine as the
// gRPC service sessionledger.audit.v1.Audit (auditpb), and Client asks that
// service the same questions with the same Go signatures, so a command can
// run against either without knowing which.
//
// # Indexes and cost
//
// Event queries use the ledger's session or user index when the filter names
// one, and binary searches over time for windows; everything else is a scan
// of the window. State at a time (SessionsAt, BansAt, Replay) loads the
// nearest projection snapshot and replays from it (projections.StateAtTime).
// Results are handed to a callback one at a time, so exports and long
// queries run in constant memory. Export formats a scan of the log itself,
// decoding each event into one reused message, which is about twice as
// fast as formatting the records Events delivers.
//
// # Damaged logs
//
// A record that does not decode, a seq missing from the log (the seqs of
// a log are consecutive, so a deleted record leaves a gap), and an entry of
// the log that is no record at all (a stray or short key) are skipped
// where that is safe (event queries, timelines, export, stats): the query
// goes on and ends with a *CorruptError listing what it skipped. A
// damaged index is read around: the answer comes from the log, and the
// query still ends with an error matching ledger.ErrCorrupt. Queries that
// rebuild state stop at a lost record, since the state after it is not
// known.
// Verify reports the first bad seq of the chain as a result, not an error.
//
// # Concurrency
//
// Engine, Server and Client are safe for concurrent use. Query callbacks,
// export writes and Server's Sends run outside ledger read transactions:
// records are read in batches whose transaction ends before they are handed
// on, because a read transaction held open by a slow consumer (a gRPC
// client, a pipe) blocks hubd's appends whenever bbolt must grow its memory
// map. The one exception is Verify's progress callback, which the ledger
// calls mid-scan: it must not block. Authentication is
// the host's job: hubd guards the service with its admin token and Client
// sends it as "authorization: Bearer <token>".
package audit
