package protowalk

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

func TestWalk(t *testing.T) {
	var canonical []byte
	canonical = protowire.AppendTag(canonical, 1, protowire.VarintType)
	canonical = protowire.AppendVarint(canonical, 300)
	canonical = protowire.AppendTag(canonical, 2, protowire.BytesType)
	canonical = protowire.AppendString(canonical, "a")
	canonical = protowire.AppendTag(canonical, 2, protowire.BytesType)
	canonical = protowire.AppendString(canonical, "b")

	type field struct {
		num protowire.Number
		v   uint64
		x   string
	}
	var got []field
	ok := Walk(canonical, func(num protowire.Number, _ protowire.Type, v uint64, x []byte) bool {
		got = append(got, field{num, v, string(x)})
		return true
	}, 2)
	want := []field{{1, 300, ""}, {2, 0, "a"}, {2, 0, "b"}}
	if !ok || len(got) != len(want) {
		t.Fatalf("Walk = %v, fields %v; want true, %v", ok, got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %+v; want %+v", i, got[i], want[i])
		}
	}

	all := func(protowire.Number, protowire.Type, uint64, []byte) bool { return true }
	outOfOrder := protowire.AppendVarint(protowire.AppendTag(nil, 2, protowire.VarintType), 1)
	outOfOrder = protowire.AppendVarint(protowire.AppendTag(outOfOrder, 1, protowire.VarintType), 1)
	fixed := protowire.AppendFixed32(protowire.AppendTag(nil, 1, protowire.Fixed32Type), 7)
	for name, b := range map[string][]byte{
		"repeated field not allowed": canonical,
		"out of order":               outOfOrder,
		"fixed32 wire type":          fixed,
		"truncated":                  canonical[:len(canonical)-1],
		"bad tag":                    {0xff},
	} {
		if Walk(b, all, 0) {
			t.Errorf("%s: Walk = true; want false", name)
		}
	}
	if Walk(canonical, func(num protowire.Number, _ protowire.Type, _ uint64, _ []byte) bool { return num != 2 }, 2) {
		t.Error("Walk = true when fn refused a field; want false")
	}
	if !Walk(nil, all, 0) {
		t.Error("Walk(empty) = false; want true")
	}
}
