// Package hub is the sessionledger server: clients hold a Hub.Connect
// stream, operators call the Admin API, and every intent — connect, notify,
// kick, ban, unban, disconnect — is appended to the ledger before it takes
// effect. The hub never changes session state directly: it enforces what
// the projections derived from the log say.
//
// # Flow
//
// A connect is checked (identity, ban, rate; then under the user's lock
// the ban again, the resume, and the node's capacity as the session is
// registered), its session_connected event (listing the sessions it
// supersedes under the single-device policy) is published through the
// ledger's watermill Publisher, and the Welcome goes out once the
// projections applied it. Refusals are recorded as connect_rejected,
// aggregated within fixed bounds (limits.go). An admin Kick publishes
// kick_requested and returns once it is applied; the projection marks the
// targeted sessions, the hub's change feed (onChange) signals each session
// it holds, and the session sends Disconnect (or, in abort mode, records
// its end and closes the transport), records session_disconnected with the
// kick's event id, and ends the stream with a status carrying the same
// Disconnect. onChange enforces every pending end the projections mark,
// whatever the record: a kick, a ban, a superseding connect, or a connect
// recorded while its user was banned.
//
// # Failure
//
// If the ledger cannot append, connects and admin calls fail with
// Unavailable and nothing takes effect (fail closed). A session end that
// cannot be recorded is logged; the next start records it as lost, or, if
// the projections mark it pending a kick, ban or supersede, as that
// pending end (the first recorded cause wins, at every end). Projections
// that fall behind the log turn health NOT_SERVING until they catch up.
//
// # Concurrency
//
// Server is safe for concurrent use. Connect decisions of one user are
// serialised so the single-device policy sees every earlier connect, and a
// ban of the user is recorded under the same per-user lock, so a connect is
// either refused by the ban or applied before it and ended by it. A
// session's end is recorded under it too, so a kick lands wholly before
// the end (which then carries it) or after it.
package hub
