package labelindex

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	// The messages below are marshalled by their own code, which that codec calls.
	_ "github.com/meridian-obs/meridian/internal/grpccodec"
)

const (
	serviceName = "meridian.labelindex.v1.LabelIndex"
	watchMethod = "/" + serviceName + "/Watch"
)

// watchServer is what serviceDesc dispatches to.
type watchServer interface {
	serveWatch(grpc.ServerStream) error
}

// serviceDesc is the LabelIndex service, as protoc would generate it from
//
//	service LabelIndex { rpc Watch(stream WatchRequest) returns (stream WatchResponse); }
//	message WatchRequest { uint64 ping = 1; }
//	message WatchResponse {
//	  string version = 1;          // the store's token: epoch "." number of its last change
//	  uint64 ping = 2;             // the ping answered; 0 when the store pushes a change
//	  uint64 structural = 3;       // number of the last change that may alter any answer
//	  repeated Created created = 4; // series created after it, since the previous message
//	}
//	message Created { uint64 seq = 1; repeated string metrics = 2; }
var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*watchServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Watch",
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(watchServer).serveWatch(stream) },
		ServerStreams: true,
		ClientStreams: true,
	}},
	Metadata: "meridian/labelindex/v1/labelindex.proto",
}

// Register serves the LabelIndex Watch stream of t on g.
func (t *Tracker) Register(g *grpc.Server) {
	g.RegisterService(&serviceDesc, t)
}

// serveWatch sends the current token at once, then answers every ping with it and pushes every
// change as it is recorded, until the client goes away or the store shuts down. The first
// message gives its own number as the last structural change: the client knows nothing older.
func (t *Tracker) serveWatch(stream grpc.ServerStream) error {
	ctx := stream.Context()
	errShutdown := status.Error(codes.Unavailable, "store shutting down")
	select {
	case <-t.stopped:
		return errShutdown
	default:
	}
	pings := make(chan uint64, 16)
	recvErr := make(chan error, 1)
	go func() {
		for {
			var req watchRequest
			if err := stream.RecvMsg(&req); err != nil {
				recvErr <- err
				return
			}
			select {
			case pings <- req.Ping:
			case <-ctx.Done():
				return
			}
		}
	}()
	tok, cursor, _, _, next := t.since(math.MaxUint64)
	if err := stream.SendMsg(&watchResponse{Version: tok, Structural: cursor}); err != nil {
		return err
	}
	for {
		var ping uint64
		select {
		case <-ctx.Done():
			return nil
		case <-t.stopped:
			return errShutdown
		case err := <-recvErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case ping = <-pings:
		case <-next:
		}
		var resp watchResponse
		var created []change
		resp.Version, cursor, resp.Structural, created, next = t.since(cursor)
		resp.Ping = ping
		for _, c := range created {
			resp.Created = append(resp.Created, createdSeries{Seq: c.seq, Metrics: c.metrics})
		}
		if err := stream.SendMsg(&resp); err != nil {
			return err
		}
	}
}

// WatcherOptions tunes a Watcher; zero values take the defaults.
type WatcherOptions struct {
	// PingInterval is how often the store is pinged; default 250ms.
	PingInterval time.Duration
	// MaxSilence is how long a ping may stay unanswered before no answer of the store is taken
	// to hold (the store may be slow or gone); default 1s.
	MaxSilence time.Duration
	// RetryInterval is the pause before a broken stream is opened again; default 1s.
	RetryInterval time.Duration
	// UnsupportedRetry is the pause after a store answered that it has no LabelIndex service
	// (a Thanos store, a querier); default 1m, in case it is upgraded.
	UnsupportedRetry time.Duration
}

// Watcher follows one store's label index changes over the Watch stream.
type Watcher struct {
	conn grpc.ClientConnInterface
	opts WatcherOptions

	mu      sync.Mutex
	acked   uint64      // last ping answered
	pending []time.Time // send times of the pings after acked, oldest first

	// What the current stream told of the store's changes: its token is epoch and seq (no epoch:
	// no token); nothing before floor is known, so answers read before it do not hold; metrics
	// holds the last change that created series of each metric name after floor.
	epoch   string
	seq     uint64
	floor   uint64
	metrics map[string]uint64
}

// NewWatcher returns a watcher over conn; Run follows the store.
func NewWatcher(conn grpc.ClientConnInterface, opts WatcherOptions) *Watcher {
	if opts.PingInterval <= 0 {
		opts.PingInterval = 250 * time.Millisecond
	}
	if opts.MaxSilence <= 0 {
		opts.MaxSilence = time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = time.Second
	}
	if opts.UnsupportedRetry <= 0 {
		opts.UnsupportedRetry = time.Minute
	}
	return &Watcher{conn: conn, opts: opts}
}

// Valid tells whether an answer the store sent with token still holds: the stream is up, the
// store answered its pings within MaxSilence, and no change the answer depends on was recorded
// after it was read. An answer for one metric (scoped) depends on structural changes and new
// series of that metric; any other answer on every change.
func (w *Watcher) Valid(token, metric string, scoped bool) bool {
	epoch, seq, ok := parseToken(token)
	if !ok {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.epoch == "" || epoch != w.epoch || seq < w.floor:
		return false
	case len(w.pending) > 0 && time.Since(w.pending[0]) > w.opts.MaxSilence:
		return false
	case scoped:
		return seq >= w.metrics[metric]
	default:
		return seq >= w.seq
	}
}

// Current returns the store's current token, or "" when there is none or the store is silent.
func (w *Watcher) Current() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.epoch == "" || len(w.pending) > 0 && time.Since(w.pending[0]) > w.opts.MaxSilence {
		return ""
	}
	return formatToken(w.epoch, w.seq)
}

// apply takes in what one message says of the store's changes.
func (w *Watcher) apply(resp *watchResponse) {
	epoch, seq, ok := parseToken(resp.Version)
	if !ok {
		w.epoch, w.seq, w.floor, w.metrics = "", 0, 0, nil
		return
	}
	if epoch != w.epoch {
		w.epoch, w.floor, w.metrics = epoch, resp.Structural, map[string]uint64{}
	}
	w.seq = seq
	if resp.Structural > w.floor {
		w.floor = resp.Structural
		for m, at := range w.metrics {
			if at <= w.floor {
				delete(w.metrics, m)
			}
		}
	}
	for _, c := range resp.Created {
		for _, m := range c.Metrics {
			w.metrics[m] = max(w.metrics[m], c.Seq)
		}
	}
}

// Run keeps a Watch stream open until ctx is done, opening it again after each failure.
func (w *Watcher) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.watch(ctx)
		w.reset()
		wait := w.opts.RetryInterval
		if status.Code(err) == codes.Unimplemented {
			wait = w.opts.UnsupportedRetry
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

func (w *Watcher) reset() {
	w.mu.Lock()
	w.acked, w.pending = 0, nil
	w.epoch, w.seq, w.floor, w.metrics = "", 0, 0, nil
	w.mu.Unlock()
}

// watch runs one stream until it fails.
func (w *Watcher) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.conn.NewStream(ctx, &serviceDesc.Streams[0], watchMethod)
	if err != nil {
		return err
	}
	go func() {
		tick := time.NewTicker(w.opts.PingInterval)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			w.mu.Lock()
			w.pending = append(w.pending, time.Now())
			w.mu.Unlock()
			// A failed send breaks the stream, and RecvMsg below reports it.
			if stream.SendMsg(&watchRequest{Ping: seq}) != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	for {
		var resp watchResponse
		if err := stream.RecvMsg(&resp); err != nil {
			return err
		}
		w.mu.Lock()
		w.apply(&resp)
		if resp.Ping > w.acked {
			n := min(int(resp.Ping-w.acked), len(w.pending))
			w.pending = w.pending[n:]
			w.acked = resp.Ping
		}
		w.mu.Unlock()
	}
}

// watchRequest is a ping: field 1, ping (uint64).
type watchRequest struct {
	Ping uint64
}

func (m *watchRequest) Size() int {
	if m.Ping == 0 {
		return 0
	}
	return protowire.SizeTag(1) + protowire.SizeVarint(m.Ping)
}

func (m *watchRequest) MarshalToSizedBuffer(b []byte) (int, error) {
	out := b[:0]
	if m.Ping != 0 {
		out = protowire.AppendTag(out, 1, protowire.VarintType)
		out = protowire.AppendVarint(out, m.Ping)
	}
	return checkSize(out, b)
}

func (m *watchRequest) Unmarshal(b []byte) error {
	*m = watchRequest{}
	return unmarshalFields("WatchRequest", b, func(num protowire.Number, typ protowire.Type, b []byte) (int, bool, error) {
		if num != 1 {
			return 0, false, nil
		}
		if typ != protowire.VarintType {
			return 0, true, fmt.Errorf("field ping: wire type %d, want varint", typ)
		}
		v, n := protowire.ConsumeVarint(b)
		m.Ping = v
		return n, true, nil
	})
}

// watchResponse is what the store sends (see serviceDesc).
type watchResponse struct {
	Version    string
	Ping       uint64
	Structural uint64
	Created    []createdSeries
}

// createdSeries is one change that created series: its number and their metric names.
type createdSeries struct {
	Seq     uint64
	Metrics []string
}

func (m *watchResponse) Size() int {
	n := 0
	if m.Version != "" {
		n += protowire.SizeTag(1) + protowire.SizeBytes(len(m.Version))
	}
	if m.Ping != 0 {
		n += protowire.SizeTag(2) + protowire.SizeVarint(m.Ping)
	}
	if m.Structural != 0 {
		n += protowire.SizeTag(3) + protowire.SizeVarint(m.Structural)
	}
	for i := range m.Created {
		n += protowire.SizeTag(4) + protowire.SizeBytes(m.Created[i].size())
	}
	return n
}

func (m *watchResponse) MarshalToSizedBuffer(b []byte) (int, error) {
	out := b[:0]
	if m.Version != "" {
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendString(out, m.Version)
	}
	if m.Ping != 0 {
		out = protowire.AppendTag(out, 2, protowire.VarintType)
		out = protowire.AppendVarint(out, m.Ping)
	}
	if m.Structural != 0 {
		out = protowire.AppendTag(out, 3, protowire.VarintType)
		out = protowire.AppendVarint(out, m.Structural)
	}
	for i := range m.Created {
		c := &m.Created[i]
		out = protowire.AppendTag(out, 4, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(c.size()))
		out = c.append(out)
	}
	return checkSize(out, b)
}

func (m *watchResponse) Unmarshal(b []byte) error {
	*m = watchResponse{}
	return unmarshalFields("WatchResponse", b, func(num protowire.Number, typ protowire.Type, b []byte) (int, bool, error) {
		switch num {
		case 1:
			if typ != protowire.BytesType {
				return 0, true, fmt.Errorf("field version: wire type %d, want bytes", typ)
			}
			v, n := protowire.ConsumeString(b)
			m.Version = v
			return n, true, nil
		case 2, 3:
			if typ != protowire.VarintType {
				return 0, true, fmt.Errorf("field %d: wire type %d, want varint", num, typ)
			}
			v, n := protowire.ConsumeVarint(b)
			if num == 2 {
				m.Ping = v
			} else {
				m.Structural = v
			}
			return n, true, nil
		case 4:
			if typ != protowire.BytesType {
				return 0, true, fmt.Errorf("field created: wire type %d, want bytes", typ)
			}
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return n, true, nil
			}
			var c createdSeries
			if err := c.unmarshal(v); err != nil {
				return 0, true, fmt.Errorf("field created: %w", err)
			}
			m.Created = append(m.Created, c)
			return n, true, nil
		}
		return 0, false, nil
	})
}

func (c *createdSeries) size() int {
	n := 0
	if c.Seq != 0 {
		n += protowire.SizeTag(1) + protowire.SizeVarint(c.Seq)
	}
	for _, s := range c.Metrics {
		n += protowire.SizeTag(2) + protowire.SizeBytes(len(s))
	}
	return n
}

func (c *createdSeries) append(out []byte) []byte {
	if c.Seq != 0 {
		out = protowire.AppendTag(out, 1, protowire.VarintType)
		out = protowire.AppendVarint(out, c.Seq)
	}
	for _, s := range c.Metrics {
		out = protowire.AppendTag(out, 2, protowire.BytesType)
		out = protowire.AppendString(out, s)
	}
	return out
}

func (c *createdSeries) unmarshal(b []byte) error {
	return unmarshalFields("Created", b, func(num protowire.Number, typ protowire.Type, b []byte) (int, bool, error) {
		switch num {
		case 1:
			if typ != protowire.VarintType {
				return 0, true, fmt.Errorf("field seq: wire type %d, want varint", typ)
			}
			v, n := protowire.ConsumeVarint(b)
			c.Seq = v
			return n, true, nil
		case 2:
			if typ != protowire.BytesType {
				return 0, true, fmt.Errorf("field metrics: wire type %d, want bytes", typ)
			}
			v, n := protowire.ConsumeString(b)
			if n >= 0 {
				c.Metrics = append(c.Metrics, v)
			}
			return n, true, nil
		}
		return 0, false, nil
	})
}

// checkSize reports whether out, marshalled into b, filled it exactly as Size promised.
func checkSize(out, b []byte) (int, error) {
	if len(out) != len(b) || (len(out) > 0 && &out[0] != &b[0]) {
		return 0, fmt.Errorf("labelindex: marshalled %d bytes, size said %d", len(out), len(b))
	}
	return len(out), nil
}

// unmarshalFields walks the fields of message msg in b. field consumes the value of a field it
// knows and returns its length (negative for a protowire error) and true; for a field it does
// not know it returns false, and the field is skipped as protobuf requires.
func unmarshalFields(msg string, b []byte, field func(protowire.Number, protowire.Type, []byte) (int, bool, error)) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%s: bad tag: %w", msg, protowire.ParseError(n))
		}
		b = b[n:]
		m, known, err := field(num, typ, b)
		if err != nil {
			return fmt.Errorf("%s: %w", msg, err)
		}
		if !known {
			m = protowire.ConsumeFieldValue(num, typ, b)
		}
		if m < 0 {
			return fmt.Errorf("%s: field %d: %w", msg, num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return nil
}
