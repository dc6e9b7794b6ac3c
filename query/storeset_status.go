package query

import (
	"github.com/prometheus/client_golang/prometheus"
)

// storeStatusCollector exposes, at scrape time, what the store set knows of each store with its
// region: the figures alerts and dashboards ask for per region ("is eu-west-1 reachable, and how
// fresh is its newest sample?"). meridian_query_store_up has only the address, known before the
// first Info answer; the region comes from that answer.
type storeStatusCollector struct {
	set     *StoreSet
	healthy *prometheus.Desc
	maxTime *prometheus.Desc
}

func newStoreStatusCollector(set *StoreSet) *storeStatusCollector {
	return &storeStatusCollector{
		set: set,
		healthy: prometheus.NewDesc("meridian_query_store_healthy",
			"1 when the store answered its last Info probe, 0 when not; region is the store's region label (empty before its first answer).",
			[]string{"store", "region"}, nil),
		maxTime: prometheus.NewDesc("meridian_query_store_max_time_seconds",
			"Newest sample time the store announced in its last Info answer (Unix seconds); absent when it never answered or holds no data.",
			[]string{"store", "region"}, nil),
	}
}

func (c *storeStatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.healthy
	ch <- c.maxTime
}

func (c *storeStatusCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.set.Stores() {
		healthy := 0.0
		if st.Healthy {
			healthy = 1
		}
		ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, healthy, st.Address, st.Region)
		// An empty store announces math.MaxInt64 or 0; neither is a sample time.
		if st.MaxTime > 0 && st.MaxTime < maxAnnouncedTime {
			ch <- prometheus.MustNewConstMetric(c.maxTime, prometheus.GaugeValue, float64(st.MaxTime)/1000, st.Address, st.Region)
		}
	}
}

// maxAnnouncedTime bounds plausible sample times (year 2262 in milliseconds is far beyond it):
// stores without data announce the int64 extremes.
const maxAnnouncedTime = int64(1) << 50
