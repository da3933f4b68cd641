// Package eventpb holds the ledger's stored records and session events:
// events.proto (docs/events.md), the Go code protoc generates from it
// (generate.sh; committed), and Decoder, the one fast decoder of stored
// events.
//
// # Decoding events
//
// Decoder reads an encoded Event into a reusable Slot, keeping what its
// DecoderOptions say (which types in full, interned strings, byte fields
// aliasing the input), and falls back to proto.Unmarshal for anything but
// the canonical encoding, so its results equal a full decode. projections
// (replay) and audit (export) use it after ledger.Store.ScanRaw; everything
// else decodes with proto.Unmarshal (ledger.DecodeRecord). A Decoder and a
// Slot belong to one goroutine at a time.
//
// This package imports no other package of the module.
package eventpb
