package storeapi

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/thanos/pkg/exemplars/exemplarspb"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/metadata/metadatapb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// exemplarTSDB opens a TSDB with exemplar storage holding two exemplars of one series and one
// of another.
func exemplarTSDB(t *testing.T) *tsdb.DB {
	t.Helper()
	opts := tsdb.DefaultOptions()
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = 100
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	app := db.Appender(context.Background())
	for _, s := range []struct {
		lset  labels.Labels
		trace string
		t     int64
		v     float64
	}{
		{labels.FromStrings("__name__", "latency_bucket", "le", "0.1", "region", "own"), "a1", 1000, 0.05},
		{labels.FromStrings("__name__", "latency_bucket", "le", "0.1", "region", "own"), "a2", 2000, 0.07},
		{labels.FromStrings("__name__", "latency_bucket", "le", "1"), "b1", 1500, 0.5},
	} {
		ref, err := app.Append(0, s.lset, s.t, 1)
		require.NoError(t, err)
		_, err = app.AppendExemplar(ref, s.lset, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", s.trace), Value: s.v, Ts: s.t, HasTs: true})
		require.NoError(t, err)
	}
	require.NoError(t, app.Commit())
	return db
}

// startServices serves srv on a loopback port and returns a connection to it.
func startServices(t *testing.T, srv *Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func receiveExemplars(t *testing.T, c exemplarspb.ExemplarsClient, req *exemplarspb.ExemplarsRequest) ([]*exemplarspb.ExemplarData, []string, error) {
	t.Helper()
	stream, err := c.Exemplars(context.Background(), req)
	require.NoError(t, err)
	var data []*exemplarspb.ExemplarData
	var warns []string
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data, warns, nil
		}
		if err != nil {
			return data, warns, err
		}
		if w := resp.GetWarning(); w != "" {
			warns = append(warns, w)
			continue
		}
		data = append(data, resp.GetData())
	}
}

func TestExemplarsServedWithExternalLabels(t *testing.T) {
	db := exemplarTSDB(t)
	srv, err := NewServer(db, Options{ExternalLabels: euWest, Exemplars: FromExemplarQueryable(db)})
	require.NoError(t, err)
	c := exemplarspb.NewExemplarsClient(startServices(t, srv))

	for _, tc := range []struct {
		name     string
		query    string
		want     map[string][]string // series -> trace ids
		wantCode codes.Code
	}{
		{
			name:  "series get the external labels, their own region overridden",
			query: `latency_bucket`,
			want: map[string][]string{
				`{__name__="latency_bucket", cluster="c1", le="0.1", region="eu-west-1"}`: {"a1", "a2"},
				`{__name__="latency_bucket", cluster="c1", le="1", region="eu-west-1"}`:   {"b1"},
			},
		},
		{
			name:  "a matcher on the external label is answered by it",
			query: `rate(latency_bucket{region="eu-west-1", le="1"}[5m])`,
			want:  map[string][]string{`{__name__="latency_bucket", cluster="c1", le="1", region="eu-west-1"}`: {"b1"}},
		},
		{name: "a contradicting external label answers nothing", query: `latency_bucket{region="us-east-1"}`, want: map[string][]string{}},
		{name: "only external label matchers is refused, as in Thanos", query: `{region="eu-west-1"}`, wantCode: codes.InvalidArgument},
		{name: "bad PromQL is refused", query: `latency_bucket{`, wantCode: codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, warns, err := receiveExemplars(t, c, &exemplarspb.ExemplarsRequest{Query: tc.query, Start: 0, End: 10000})
			if tc.wantCode != codes.OK {
				require.Equal(t, tc.wantCode, status.Code(err), "%v", err)
				return
			}
			require.NoError(t, err)
			require.Empty(t, warns)
			got := map[string][]string{}
			for _, d := range data {
				var traces []string
				for _, e := range d.Exemplars {
					traces = append(traces, e.Labels.PromLabels().Get("trace_id"))
				}
				got[d.SeriesLabels.PromLabels().String()] = traces
			}
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("time range", func(t *testing.T) {
		data, _, err := receiveExemplars(t, c, &exemplarspb.ExemplarsRequest{Query: `latency_bucket{le="0.1"}`, Start: 1500, End: 2500})
		require.NoError(t, err)
		require.Len(t, data, 1)
		require.Len(t, data[0].Exemplars, 1)
		require.Equal(t, int64(2000), data[0].Exemplars[0].Ts)
		require.Equal(t, 0.07, data[0].Exemplars[0].Value)
	})
}

// fakeSources are a querier's sources underneath: fixed answers and warnings.
type fakeSources struct {
	md      map[string][]metadata.Metadata
	exs     []exemplar.QueryResult
	warn    error
	gotReq  MetadataRequest
	gotSels [][]*labels.Matcher
}

func (f *fakeSources) MetricMetadata(_ context.Context, req MetadataRequest) (map[string][]metadata.Metadata, annotations.Annotations, error) {
	f.gotReq = req
	var ws annotations.Annotations
	if f.warn != nil {
		ws.Add(f.warn)
	}
	return f.md, ws, nil
}

func (f *fakeSources) Exemplars(_ context.Context, _, _ int64, sels [][]*labels.Matcher) ([]exemplar.QueryResult, annotations.Annotations, error) {
	f.gotSels = sels
	var ws annotations.Annotations
	if f.warn != nil {
		ws.Add(f.warn)
	}
	return f.exs, ws, nil
}

func TestLabelSetServerPassesExemplarSelectorsAndWarnings(t *testing.T) {
	src := &fakeSources{
		exs: []exemplar.QueryResult{{
			SeriesLabels: labels.FromStrings("__name__", "latency_bucket", "region", "eu-west-1"),
			Exemplars:    []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", "x"), Value: 1, Ts: 5, HasTs: true}},
		}},
		warn: errors.New(`region "us-east-1" (store a:1): unavailable`),
	}
	sets := func() []labels.Labels { return []labels.Labels{euWest, labels.FromStrings("region", "us-east-1")} }
	srv, err := NewServer(db0(t), Options{LabelSets: sets, ComponentType: "query", Exemplars: src, Metadata: src})
	require.NoError(t, err)
	c := exemplarspb.NewExemplarsClient(startServices(t, srv))

	data, warns, err := receiveExemplars(t, c, &exemplarspb.ExemplarsRequest{Query: `latency_bucket{region="eu-west-1"}`, End: 10})
	require.NoError(t, err)
	require.Equal(t, []string{`region "us-east-1" (store a:1): unavailable`}, warns)
	require.Len(t, data, 1)
	require.Equal(t, `{__name__="latency_bucket", region="eu-west-1"}`, data[0].SeriesLabels.PromLabels().String())
	require.Equal(t, `[[region="eu-west-1" __name__="latency_bucket"]]`, matchersString(src.gotSels))

	_, _, err = receiveExemplars(t, c, &exemplarspb.ExemplarsRequest{Query: `latency_bucket`, End: 10, PartialResponseStrategy: storepb.PartialResponseStrategy_ABORT})
	require.Equal(t, codes.Aborted, status.Code(err))

	src.gotSels = nil
	data, _, err = receiveExemplars(t, c, &exemplarspb.ExemplarsRequest{Query: `latency_bucket{region="ap-southeast-1"}`, End: 10})
	require.NoError(t, err)
	require.Empty(t, data)
	require.Nil(t, src.gotSels, "a request no label set matches never reaches the source")
}

func matchersString(sels [][]*labels.Matcher) string {
	out := "["
	for _, s := range sels {
		out += "["
		for i, m := range s {
			if i > 0 {
				out += " "
			}
			out += m.String()
		}
		out += "]"
	}
	return out + "]"
}

func db0(t *testing.T) *tsdb.DB {
	t.Helper()
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, db.Close()) })
	return db
}

func TestMetadataServedInFramesAndAnnouncedInInfo(t *testing.T) {
	md := map[string][]metadata.Metadata{}
	for i := range metadataFamiliesPerFrame + 5 {
		md["metric_"+string(rune('a'+i%26))+string(rune('0'+i/26%10))+string(rune('0'+i/260))] = []metadata.Metadata{{Type: "counter", Help: "Requests.", Unit: ""}}
	}
	md["http_request_duration_seconds"] = []metadata.Metadata{{Type: model.MetricTypeHistogram, Help: "Latency.", Unit: "seconds"}}
	src := &fakeSources{md: md}
	srv, err := NewServer(db0(t), Options{ExternalLabels: euWest, Metadata: src})
	require.NoError(t, err)
	conn := startServices(t, srv)

	info, err := infopb.NewInfoClient(conn).Info(context.Background(), &infopb.InfoRequest{})
	require.NoError(t, err)
	require.NotNil(t, info.MetricMetadata, "metadata announced")
	require.Nil(t, info.Exemplars, "exemplars not served, not announced")

	stream, err := metadatapb.NewMetadataClient(conn).MetricMetadata(context.Background(), &metadatapb.MetricMetadataRequest{Metric: "", Limit: -1})
	require.NoError(t, err)
	got := map[string][]metadatapb.Meta{}
	frames := 0
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		frames++
		for k, v := range resp.GetMetadata().Metadata {
			got[k] = v.Metas
		}
	}
	require.Equal(t, 2, frames)
	require.Len(t, got, len(md))
	require.Equal(t, []metadatapb.Meta{{Type: "histogram", Help: "Latency.", Unit: "seconds"}}, got["http_request_duration_seconds"])
	require.Equal(t, MetadataRequest{Limit: -1}, src.gotReq)
}
