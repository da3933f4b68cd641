// Package protowalk walks the fields of a protobuf message in the canonical
// encoding the ledger writes. The fast event decoders of projections
// (replay) and audit (export) build on it; anything it refuses they hand to
// proto.Unmarshal, so their results always equal a full decode.
package protowalk

import "google.golang.org/protobuf/encoding/protowire"

// Walk calls fn for each field of the canonical encoding b: fields in number
// order, each at most once except the field numbered repeated (0: none),
// varint values in v and length-delimited ones in x (aliasing b). It
// reports false for any other wire type, out-of-order or repeated fields,
// truncated input, or when fn does.
func Walk(b []byte, fn func(num protowire.Number, wt protowire.Type, v uint64, x []byte) bool, repeated protowire.Number) bool {
	var last protowire.Number
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 || num < last || (num == last && num != repeated) {
			return false
		}
		last = num
		b = b[n:]
		var v uint64
		var x []byte
		switch wt {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			x, n = protowire.ConsumeBytes(b)
		default:
			return false
		}
		if n < 0 || !fn(num, wt, v, x) {
			return false
		}
		b = b[n:]
	}
	return true
}
