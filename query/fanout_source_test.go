package query

import (
	"context"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

// TestFanoutMergesStoresOfOneReplicaSampleBySample is an ingest node and the Store Gateway over
// the blocks it shipped: both announce the same labels, replica included, one holds the older
// part of each series and the other the newer, overlapping. Deduplicated, every sample comes
// once and none is lost at the seam (the replica penalty would drop the two after it).
func TestFanoutMergesStoresOfOneReplicaSampleBySample(t *testing.T) {
	ext := labels.FromStrings("region", "eu-west-1", "replica", "a")
	bucket := startTestStore(t, ext, nil)
	node := startTestStore(t, ext, nil)
	other := startTestStore(t, labels.FromStrings("region", "eu-west-1", "replica", "b"), nil)
	s := labels.FromStrings("__name__", "m", "job", "api")
	appendFloats(t, bucket.db, 0, 60000, 1000, s)
	appendFloats(t, node.db, 50000, 100000, 1000, s)
	appendFloats(t, other.db, 0, 100000, 1000, s)

	for _, tc := range []struct {
		name   string
		stores []string
	}{
		{"one replica in two stores", []string{bucket.addr, node.addr}},
		{"and an HA replica beside it", []string{bucket.addr, node.addr, other.addr}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := startStoreSet(t, StoreSetOptions{Endpoints: tc.stores})
			f := NewFanout(nil, nil, set, FanoutOptions{ReplicaLabels: []string{"replica"}})
			got, ws, err := selectAll(t, context.Background(), f, 0, 100000, metricM)
			require.NoError(t, err)
			require.Empty(t, ws)
			require.Equal(t, map[string]int{`{__name__="m", job="api", region="eu-west-1"}`: 101}, got)
		})
	}
}
