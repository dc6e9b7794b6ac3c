package slo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteStatusTable prints SLO results as a table for people: one row per region and one for
// the global value of each SLO, the error ratio over every window, the 1h and 6h burn rates,
// the remaining budget and the time until it is exhausted. "*" marks a partial number,
// "no traffic" an undefined ratio, "missing" a region without data; a negative remaining
// budget is shown as 0% with the overspend beside it.
func WriteStatusTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var notes []string
	for i, res := range results {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		header := []string{"SERVICE", "SLO", "OBJECTIVE", "REGION"}
		for _, win := range res.Windows {
			header = append(header, "RATIO "+win)
		}
		header = append(header, "BURN 1h", "BURN 6h", "BUDGET LEFT", "EXHAUSTED IN")
		fmt.Fprintln(tw, strings.Join(header, "\t"))
		for _, rr := range append([]RegionResult{res.Global}, res.Regions...) {
			row := []string{res.Service, res.Name, fmt.Sprintf("%.4g%%", res.Objective*100), rr.Region}
			for _, win := range res.Windows {
				v, _ := rr.Window(win)
				row = append(row, formatRatio(v))
			}
			row = append(row, formatBurn(rr, "1h"), formatBurn(rr, "6h"), formatBudget(rr.Budget), rr.Budget.Exhaustion+partialMark(rr.Budget.Partial && rr.Budget.Remaining != nil))
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
		prefix := res.Service + "/" + res.Name + ": "
		if res.Error != "" {
			notes = append(notes, prefix+"error: "+res.Error)
		}
		if len(res.MissingRegions) > 0 {
			notes = append(notes, prefix+"no data from "+strings.Join(res.MissingRegions, ", ")+" in some windows: numbers marked * are partial")
		}
		for _, warning := range res.Warnings {
			notes = append(notes, prefix+"warning: "+warning)
		}
		for _, n := range res.Notes {
			notes = append(notes, prefix+n)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write status table: %w", err)
	}
	if len(notes) > 0 {
		if _, err := fmt.Fprintln(w, "\n"+strings.Join(notes, "\n")); err != nil {
			return fmt.Errorf("write status notes: %w", err)
		}
	}
	return nil
}

func partialMark(p bool) string {
	if p {
		return "*"
	}
	return ""
}

func formatRatio(v WindowValue) string {
	switch {
	case v.Missing:
		return "missing"
	case v.NoTraffic:
		return "no traffic" + partialMark(v.Partial)
	case v.Ratio == nil:
		return "-"
	}
	return fmt.Sprintf("%.4g%%", *v.Ratio*100) + partialMark(v.Partial)
}

func formatBurn(rr RegionResult, window string) string {
	v, ok := rr.Window(window)
	if !ok || v.BurnRate == nil {
		return "-"
	}
	return fmt.Sprintf("%.3gx", *v.BurnRate) + partialMark(v.Partial)
}

func formatBudget(b Budget) string {
	if b.RemainingPercent == nil {
		return "-"
	}
	pct := *b.RemainingPercent
	if pct < 0 {
		return fmt.Sprintf("0%% (%.4g%% over)", -pct) + partialMark(b.Partial)
	}
	return fmt.Sprintf("%.4g%%", pct) + partialMark(b.Partial)
}
