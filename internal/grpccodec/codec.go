// Package grpccodec registers a gRPC "proto" codec that marshals Thanos's gogo-protobuf
// messages (storepb, infopb) with their generated code instead of reflection.
//
// Unmarshalled StoreAPI messages keep pointing into the bytes they were decoded from (labelpb
// turns label strings into views of the buffer), so those bytes are never returned to a pool:
// each message gets a buffer of its own that lives as long as the message does.
//
// Import it for its side effect in every binary or test that speaks StoreAPI.
package grpccodec

import (
	"google.golang.org/grpc/encoding"
	// Initialised before this package, so its own "proto" registration cannot run after ours
	// and silently replace this codec with the pooling one.
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	_ "github.com/meridian-obs/meridian/internal/buildtag"
)

// gogoMessage is what gogo-protobuf generates for every message.
type gogoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
	Unmarshal([]byte) error
}

type codec struct {
	encoding.CodecV2
}

func init() {
	encoding.RegisterCodecV2(&codec{CodecV2: encoding.GetCodecV2("proto")})
}

func (c *codec) Name() string { return "proto" }

func (c *codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.CodecV2.Marshal(v)
	}
	size := m.Size()
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	n, err := m.MarshalToSizedBuffer((*buf)[:size])
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	exact := (*buf)[:n]
	return mem.BufferSlice{mem.NewBuffer(&exact, pool)}, nil
}

func (c *codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	// NopBufferPool: the decoded message aliases these bytes, so they must not be reused.
	buf := data.MaterializeToBuffer(mem.NopBufferPool{})
	return m.Unmarshal(buf.ReadOnlyData())
}
