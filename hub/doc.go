// Package hub is the sessionledger server: the session core every
// transport serves through, the Admin API, and enforcement of what the
// projections derived from the log decide. Every intent — connect,
// notify, kick, ban, unban, disconnect — is recorded in the log before it
// takes effect; the hub never changes session state directly.
//
// # Ports
//
// The hub names no storage. It consumes three interfaces it declares
// (ports.go), which hubd wires: a Publisher (a watermill Publisher that
// returns where each message landed), a Projection (the applied state and
// a wait for a seq) and a History (index reads of the log). The
// Projection's change feed must call Enforce.
//
// # Flow
//
// A transport adapter calls Serve for each client: the gRPC Hub service
// (grpc.go) and the WebSocket handler (websocket.go, NewWebSocket) are the
// two; neither holds a rule of its own. A connect is checked
// (identity, ban, rate; then under the user's lock the ban again, the
// resume, and the node's capacity as the session is registered), its
// session_connected event (listing the sessions it supersedes under the
// single-device policy) is published, and the Welcome goes out once the
// projections applied it. Refusals are recorded as connect_rejected,
// aggregated within fixed bounds (limits.go). An admin Kick publishes
// kick_requested and returns once it is applied; the projection marks
// the targeted sessions, Enforce asks each session it holds to end, and
// the session sends Disconnect (or, in abort mode, records its end and
// aborts the transport), records session_disconnected with the kick's
// event id, and closes its transport with the same meaning (for gRPC, a
// status carrying the Disconnect).
//
// # Failure
//
// If the log cannot append, connects and admin calls fail with
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
// the end (which then carries it) or after it. A session has no goroutine
// while idle: whatever needs it pokes it, and a
// short-lived worker does what is due.
package hub
