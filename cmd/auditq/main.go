// Command auditq answers compliance questions from a sessionledger ledger:
// who was connected at a time, every kick of a user and who ordered it, a
// session's story, a step-by-step replay of an incident, and proof that the
// log is intact. See docs/auditq.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := newApp(os.Stdout, os.Stderr, os.Getenv).run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
