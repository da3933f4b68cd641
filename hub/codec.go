package hub

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frameCodec is gRPC's protobuf codec, except that a *Frame is sent as the
// encoding it already holds (Frame.Proto): a notification fanned out to N
// sessions is marshalled once, not once per stream. Everything else goes
// to the standard codec.
type frameCodec struct{ std encoding.CodecV2 }

var _ encoding.CodecV2 = frameCodec{}

func newFrameCodec() frameCodec { return frameCodec{std: encoding.GetCodecV2(proto.Name)} }

// Marshal returns f's cached encoding for a *Frame: the same bytes for
// every stream, which gRPC only reads (a SliceBuffer's Free does nothing).
func (c frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*Frame); ok {
		b, err := f.Proto()
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.std.Marshal(v)
}

func (c frameCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.std.Unmarshal(data, v) }

// Name is the standard codec's: clients see nothing different.
func (c frameCodec) Name() string { return proto.Name }
