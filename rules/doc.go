// Package rules turns Meridian's SLO and readiness configuration into Prometheus rule files,
// and runs them: the rule generator behind `meridian rules generate` (this file's neighbours
// generate*.go, slo*.go, readiness*.go, platform*.go, write.go) and the global ruler of
// `meridian query`.
//
// The generated files load unchanged in Prometheus 2.42+ and 3.x and in Thanos Ruler: they use
// no rule-group field newer than Prometheus 2.42 and are checked with promtool in the tests.
//
// SLO rules are cross-region by construction. For every SLO and window, the error and total
// rates are recorded per region as separate series (slo:sli_errors:rate<w>,
// slo:sli_total:rate<w>), from the spec's queries with the region added to their grouping by
// rewriting the PromQL syntax tree (slo.Regionize); the error ratio of a region is its errors
// over its totals, and the global ratio is sum(errors) / sum(totals) over the regions, never an
// average of ratios. The series names and labels after that are Sloth's
// (slo:sli_error:ratio_rate<w>, slo:objective:ratio, ..., sloth_slo_info with sloth_id,
// sloth_service, sloth_slo, sloth_window), plus a region label (a region's name or "global"),
// so that dashboards made for Sloth keep working.
package rules
