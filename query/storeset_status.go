package query

import (
	"github.com/prometheus/client_golang/prometheus"
)

// storeStatusCollector exposes, at scrape time, the health of each store with its region: what
// alerts and dashboards ask per region ("is eu-west-1 reachable?"). meridian_query_store_up has
// only the address, known before the first Info answer; the region comes from that answer.
//
// meridian_query_store_last_error_timestamp_seconds gives, per store, the time and reason of
// its latest failed probe or call (see failure.go for the reasons); a store that never failed
// has none, and one that recovered keeps it.
type storeStatusCollector struct {
	set       *StoreSet
	healthy   *prometheus.Desc
	lastError *prometheus.Desc
}

func newStoreStatusCollector(set *StoreSet) *storeStatusCollector {
	return &storeStatusCollector{
		set: set,
		healthy: prometheus.NewDesc("meridian_query_store_healthy",
			"1 when the store answered its last Info probe, 0 when not; region is the store's region label (empty before its first answer).",
			[]string{"store", "region"}, nil),
		lastError: prometheus.NewDesc("meridian_query_store_last_error_timestamp_seconds",
			"Unix time of the store's latest failed Info probe or StoreAPI call, with its reason (timeout, connection_refused, dns, tls, unavailable, not_a_store, dial, error, or the gRPC code in snake case).",
			[]string{"store", "region", "reason"}, nil),
	}
}

func (c *storeStatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
	ch <- c.lastError
}

func (c *storeStatusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.set.Stores() {
		healthy := 0.0
		if st.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, st.Address, st.Region)
		if !st.LastFailureTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastError, prometheus.GaugeValue,
				float64(st.LastFailureTime.UnixNano())/1e9, st.Address, st.Region, st.LastFailureReason)
		}
	}
}
