// Command hubd runs the sessionledger hub: it holds client sessions over
// gRPC, records every connect, notification, kick, ban and disconnect in
// its ledger before it takes effect, and enforces kicks and bans from the
// projections of that ledger. See docs/operations.md.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stderr, sig))
}
