package slo

// RegionSLOHealth summarises the SLOs of one region for failover readiness: the lowest
// remaining error-budget fraction over the region's SLOs and whether a page-level burn
// (5m&1h at 14.4x or 30m&6h at 6x) is true there. Known is false when no SLO could be
// evaluated for the region; Partial is true when some of its data was missing.
type RegionSLOHealth struct {
	Region             string
	MinBudgetRemaining float64 // fraction in [0, 1] (clamped), over the SLO period
	WorstSLO           string  // the SLO with the lowest remaining budget
	PageBurn           bool
	PageBurnSLOs       []string
	Known              bool
	Partial            bool
}
