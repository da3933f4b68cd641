// Package client connects applications to a sessionledger hub (hubd): it
// holds a Hub.Connect session, hands notifications to the application,
// answers the server's pings, and when the server throws the session out
// it explains why and comes back only as the server allows.
//
// # Basics
//
//	c, err := client.Dial(ctx, "127.0.0.1:7070",
//		client.WithUser("alice", "phone"), // or client.WithToken(jwt)
//		client.WithAutoAck())
//	if err != nil {
//		// A refused connect is a *client.Disconnect: banned, rate
//		// limited, bad token, ...
//	}
//	defer c.Close()
//	for n := range c.Notifications() {
//		handle(n.Topic, n.Payload)
//	}
//	// The channel closes when the client has ended; c.Err() says why
//	// (nil after Close).
//
// Dial returns once the server welcomed the session. Notifications come in
// seq order on the Notifications channel, or to an OnNotification
// callback. Acknowledge each one once processed (Ack, or WithAutoAck): the
// highest acknowledged seq is what a resume asks redelivery after. Close
// says Goodbye, so the ledger records a client_closed end.
//
// # Disconnects and reconnection
//
// Every end of a session and every failed reconnect attempt is reported as
// a Disconnect — to OnDisconnect and on the Disconnects channel — with the
// server's code (Cause), reason, reconnect advice, the ledger event id
// behind it, who ordered it, and whether and when the client will
// reconnect. The advice comes from the Disconnect frame or, when the frame
// was not read, from the detail of the stream's final gRPC status; a
// connection that breaks without either (an abort-mode kick, a network
// failure) is CauseLost.
//
// With reconnection on (the default) the client:
//
//   - never comes back after "not allowed", after being superseded by a
//     newer login of the same user (coming back would throw that login
//     out), or after the server refused it for a reason retrying cannot
//     fix (unauthenticated, invalid);
//   - waits at least the advised time after "reconnect after": the
//     longer of the advice and the current backoff, plus up to a fifth
//     of that at random, so the sessions of a node that shuts down do
//     not all come back in the same instant (WithMaxWait gives up
//     instead when the advice is longer than the application will wait,
//     e.g. a day's ban);
//   - otherwise waits a jittered exponential backoff (Backoff), growing
//     with each failed attempt in a row, so clients thrown out together do
//     not return together;
//   - resumes the previous session (its id, resume secret and the highest
//     acknowledged seq), so the server redelivers the notifications
//     recorded meanwhile, in order, before live ones. Notifications whose
//     seq is not above the last one delivered are dropped, so the
//     application sees each at most once per process. If the server
//     refuses the resume but allows connecting, the client connects
//     afresh (the refusal is reported; notifications from the gap are not
//     redelivered).
//
// The client ends (Done closes, Err returns the Disconnect) when it will
// not reconnect; Cause tells a kick, a ban, a supersede, a refusal and a
// lost connection apart.
//
// # Dead connections
//
// The server pings every heartbeat interval (given in the Welcome). A
// stream on which nothing arrives for three intervals is presumed dead (a
// half-open TCP connection, a stalled proxy): the client ends it, reports
// CauseLost, and reconnects as for any lost connection — over a new
// connection when it dialled its own (with WithConn it cannot replace the
// application's). The connection it dials also has gRPC keepalive (a ping
// after 20s without a frame, dropped without an answer within 10s; hubd
// allows client pings every 5s), and a reconnect that gets no Welcome
// within 30s counts as failed.
//
// # Concurrency
//
// A Client is safe for concurrent use. For each stream one goroutine
// reads it and never waits on the application: it hands pings to a
// second goroutine that writes pongs, acks and Goodbye, so pings are
// answered and the end of the stream is seen however far behind the
// application is. A third, the client's own goroutine, hands
// notifications over, runs the OnNotification, OnDisconnect and OnConnect
// callbacks one at a time, and waits between reconnect attempts. When a
// stream ends the end is reported at once: notifications read but not
// yet taken by the application (beyond what fits in the Notifications
// channel) are dropped unacknowledged, and the resume has them
// redelivered. The client holds at most 4096 of them; an application
// further behind has its session ended by the client as
// CauseSlowConsumer, and the client resumes.
//
// Ack never blocks. Callbacks may call Ack, and Close: from a callback it
// starts the end and returns at once (waiting would deadlock), and Done
// closes once the callback returned. Every goroutine ends when the client
// ends; Close, from anywhere else, waits for them.
//
// # Testing
//
// WithSleep replaces the wait between attempts (record the delays, or
// control when a reconnect happens) and WithRand the jitter source; OnFrame
// sees every server frame, as hubctl connect prints them.
package client
