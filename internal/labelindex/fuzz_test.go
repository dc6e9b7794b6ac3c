package labelindex

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDecodeWatchMessages feeds arbitrary bytes to both Watch message decoders: they either fail
// with an error or decode something that marshals and decodes back to itself.
func FuzzDecodeWatchMessages(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1 << 3, 3})
	f.Add([]byte{1<<3 | 2, 3, 'a', '.', '1', 2 << 3, 7})
	f.Add([]byte{9 << 3, 5, 10<<3 | 2, 1, 'x'})
	f.Add([]byte{1<<3 | 2, 9, 'a'})
	f.Add([]byte{3 << 3, 40, 4<<3 | 2, 6, 1 << 3, 41, 2<<3 | 2, 2, 'u', 'p'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var resp watchResponse
		if resp.Unmarshal(b) == nil {
			out := make([]byte, resp.Size())
			_, err := resp.MarshalToSizedBuffer(out)
			require.NoError(t, err)
			var again watchResponse
			require.NoError(t, again.Unmarshal(out))
			require.Equal(t, resp, again)
		}
		var req watchRequest
		if req.Unmarshal(b) == nil {
			out := make([]byte, req.Size())
			_, err := req.MarshalToSizedBuffer(out)
			require.NoError(t, err)
			var again watchRequest
			require.NoError(t, again.Unmarshal(out))
			require.Equal(t, req, again)
		}
	})
}
