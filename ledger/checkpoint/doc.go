// Package checkpoint signs the ledger's Merkle tree heads and keeps the
// signed checkpoints where a later copy of the log can be checked against
// them: in the ledger file, in a directory that should be on another disk
// or machine, and at hubd's GET /checkpoint and Audit API.
//
// # Format
//
// A checkpoint is a C2SP tlog-checkpoint: three lines, the origin (the
// ledger's log id, ledger.Store.LogID), the tree size in decimal, and the
// root in standard base64, signed as a note (golang.org/x/mod/sumdb/note)
// with Ed25519. The signing key's name is the origin. Files in this format
// are read by the transparency tooling that exists (the Go checksum
// database's, Trillian's and Tessera's witnesses and clients).
//
// # Keys
//
// LoadOrCreateKey keeps the private key in DATA/checkpoint.key (0600),
// created on hubd's first start; VerifierKey derives the verifier key that
// auditq verify --key and check-proof --key take. Keep the verifier key
// where the host cannot change it.
//
// # Concurrency
//
// Signer runs one goroutine between Start and Close; its methods are safe
// for concurrent use, and Close is idempotent and bounded.
package checkpoint
