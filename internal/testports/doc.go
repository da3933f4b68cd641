// Package testports reserves loopback ports for servers a test (or
// hubbench) starts on an address it must know beforehand: NATS servers
// that list each other as routes, a hubd started again where its clients
// look for it, a port that must refuse connections.
//
// # Why
//
// The usual way, listening on 127.0.0.1:0, reading the port and closing
// the listener, leaves the port free until the server listens on it:
// another test running meanwhile (`go test ./...` runs packages in
// parallel) can be given it by its own bind of port 0. And a client that
// dials a server's address while that server is down (killed, or between
// a stop and a restart) can reach whatever took the port meanwhile,
// another test's server, which would then take its sessions.
//
// A reserved port is held by a socket bound to it with SO_REUSEADDR that
// never listens, until [Reservation.Release] (for [Addr] and [Port], until
// the test ends). On Linux that gives three things the tests rely on:
//
//   - The kernel gives the port to no other bind of port 0, in this
//     process or another, and to no explicit bind without SO_REUSEADDR.
//   - A server can still listen on it, and listen again after it closed:
//     Go's net package sets SO_REUSEADDR on every listener on Unix (hubd,
//     the daemon in tests, the embedded and test NATS servers all listen
//     through it), and the kernel lets such a bind share the port with a
//     socket that does not listen. Only one listens at a time.
//   - A connect while nothing listens is refused, as on a free port.
//
// The package's tests check all three.
//
// # Caveats
//
// The guarantees are Linux's. Other Unix systems get the same socket,
// unchecked; elsewhere (no SO_REUSEADDR semantics of that kind) a
// Reservation holds nothing and the port is only one that was free a
// moment ago. A port is reserved on 127.0.0.1 only.
//
// A listener that does not set SO_REUSEADDR (not one of Go's) cannot
// listen on a reserved port.
package testports
