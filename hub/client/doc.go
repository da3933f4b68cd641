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
// callback. Acknowledge each one once processed (Ack): the highest
// acknowledged seq is what a resume asks redelivery after. WithAutoAck
// acks for the application when it hands a notification over: after an
// OnNotification callback returned, but on the channel as soon as the
// notification is in it, before the application processed it (a crash
// then loses up to the channel's capacity of acknowledged, unprocessed
// notifications; see WithAutoAck). Close says Goodbye, so the ledger
// records a client_closed end.
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
//     acknowledged seq), so the server redelivers, in order and before
//     live ones, the notifications for the user, the session or everyone
//     recorded after that seq: at most its redelivery limit (1000 by
//     default), the newest, from Session.OldestRedelivered on.
//     Notifications whose seq is not above the last one delivered are
//     dropped, so the application sees each at most once per process.
//     When some may be missing (more than the limit, or the server could
//     not read them), the new Session's RedeliveryIncomplete is true: the
//     application should resync from its own source of truth. If the
//     server refuses the resume but allows connecting, the client connects
//     afresh: the refusal is reported, nothing from the gap is
//     redelivered, and RedeliveryIncomplete is true.
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
// allows client pings every 5s): DialOptions gives the same to a
// connection the application dials for WithConn. A reconnect that gets
// no Welcome within 30s counts as failed.
//
// # Concurrency
//
// A Client is safe for concurrent use. For each stream one goroutine
// reads it and never waits on the application: it hands pings to a
// second goroutine that writes pongs, acks and Goodbye, so pings are
// answered and the end of the stream is seen however far behind the
// application is. A third, the client's own, decides about reconnecting
// and waits between attempts. All the application's code runs on a
// fourth, the dispatcher, one call at a time and in the order things
// happened: the OnFrame, OnConnect, OnNotification and OnDisconnect
// callbacks, and the sends on the Notifications and Disconnects channels.
// (When Dial fails after a refused WithResume, there is no client and no
// dispatcher: the callbacks for what happened run on Dial's goroutine
// before it returns.)
// When a stream ends the end is reported at once: notifications read but
// not yet taken by the application (beyond what fits in the Notifications
// channel) are dropped unacknowledged, and the resume redelivers them if
// they are within the server's redelivery limit (Session.
// RedeliveryIncomplete says when some are not). The client holds at most
// 512 of them; an application further behind has its session ended by
// the client as CauseSlowConsumer, and the client resumes once the
// application's callbacks have caught up.
//
// Ack never blocks. Callbacks may call Ack, and Close: Close never waits
// for a callback (it ends the connection side, at most the close timeout,
// and returns), so it can be called from a callback, or from a goroutine
// a callback waits for, without deadlock. Done closes once the dispatcher
// has run what was queued; every goroutine has ended by then.
//
// # Testing
//
// WithSleep replaces the wait between attempts (record the delays, or
// control when a reconnect happens) and WithRand the jitter source; OnFrame
// sees every server frame, as hubctl connect prints them.
package client
