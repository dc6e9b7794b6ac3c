package query

import (
	"github.com/prometheus/client_golang/prometheus"
)

// storeStatusCollector exposes, at scrape time, the health of each store with its region: what
// alerts and dashboards ask per region ("is eu-west-1 reachable?"). meridian_query_store_up has
// only the address, known before the first Info answer; the region comes from that answer.
type storeStatusCollector struct {
	set     *StoreSet
	healthy *prometheus.Desc
}

func newStoreStatusCollector(set *StoreSet) *storeStatusCollector {
	return &storeStatusCollector{
		set: set,
		healthy: prometheus.NewDesc("meridian_query_store_healthy",
			"1 when the store answered its last Info probe, 0 when not; region is the store's region label (empty before its first answer).",
			[]string{"store", "region"}, nil),
	}
}

func (c *storeStatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
}

func (c *storeStatusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.set.Stores() {
		healthy := 0.0
		if st.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, st.Address, st.Region)
	}
}
