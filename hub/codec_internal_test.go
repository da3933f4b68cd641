package hub

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sessionledger/sessionledger/hub/hubpb"
)

// TestFrameCodecSendsTheFrameEncodedOnce: a *Frame goes out as its cached
// encoding, the same bytes for every stream; other messages, and what
// comes in, take the standard protobuf codec.
func TestFrameCodecSendsTheFrameEncodedOnce(t *testing.T) {
	c := newFrameCodec()
	if c.Name() != "proto" {
		t.Fatalf("codec name %q; want proto (clients see the standard codec)", c.Name())
	}
	msg := &hubpb.ServerFrame{Frame: &hubpb.ServerFrame_Notification{Notification: &hubpb.Notification{Seq: 7, Topic: "t", Payload: []byte("p")}}}
	f := NewFrame(msg)
	a, err := c.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := proto.Marshal(msg)
	ab, bb := a.Materialize(), b.Materialize()
	if !bytes.Equal(ab, want) || !bytes.Equal(bb, want) {
		t.Fatalf("frame encoded as %x and %x; want %x", ab, bb, want)
	}
	cached, _ := f.Proto()
	if len(a) != 1 || &a[0].ReadOnlyData()[0] != &cached[0] || &b[0].ReadOnlyData()[0] != &cached[0] {
		t.Fatal("the frame was encoded again; want its cached encoding sent as it is")
	}
	a.Free() // gRPC frees what it sent: the cached encoding must survive
	if again, _ := f.Proto(); !bytes.Equal(again, want) {
		t.Fatalf("after Free the frame's encoding is %x; want %x", again, want)
	}

	plain, err := c.Marshal(msg)
	if err != nil || !bytes.Equal(plain.Materialize(), want) {
		t.Fatalf("a plain message: %x, %v; want %x", plain.Materialize(), err, want)
	}
	var got hubpb.ServerFrame
	if err := c.Unmarshal(plain, &got); err != nil || !proto.Equal(&got, msg) {
		t.Fatalf("unmarshal: %v, %v; want %v", &got, err, msg)
	}
	if _, err := c.Marshal("not a message"); err == nil {
		t.Fatal("marshal of a string: got nil error; want one")
	}
}
