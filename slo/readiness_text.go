package slo

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteReadinessText writes a report for people: per region the state, score, reason, the
// components with their inputs and the expressions they came from, the gates and the notes.
func WriteReadinessText(w io.Writer, rep *ReadinessReport) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Failover readiness (%s), evaluated %s\n", rep.Topology, rep.EvaluatedAt.UTC().Format(time.RFC3339))
	for _, warn := range rep.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	for _, r := range rep.Regions {
		writeReadinessResult(&b, r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeReadinessResult(b *strings.Builder, r ReadinessResult) {
	fmt.Fprintf(b, "\nLosing %s (survivors: %s)\n", r.Region, strings.Join(r.Survivors, ", "))
	partial := ""
	if r.Partial {
		partial = ", partial data"
	}
	fmt.Fprintf(b, "  state %s, score %s (known weight %.0f%%%s)\n", r.State, strconv.FormatFloat(r.Score, 'f', -1, 64), r.KnownWeight*100, partial)
	fmt.Fprintf(b, "  reason: %s\n", r.Reason)

	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  COMPONENT\tWEIGHT\tSCORE\tDETAIL")
	for _, c := range r.Components {
		score := "unknown"
		if c.Score != nil {
			score = strconv.FormatFloat(*c.Score, 'f', 1, 64)
		}
		fmt.Fprintf(tw, "  %s\t%.2f\t%s\t%s\n", c.Name, c.Weight, score, c.Detail)
	}
	_ = tw.Flush()

	if len(r.Gates) == 0 {
		fmt.Fprintln(b, "  gates: none")
	} else {
		fmt.Fprintln(b, "  gates:")
		for _, g := range r.Gates {
			fmt.Fprintf(b, "    %s: %s\n", g.Name, g.Message)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	fmt.Fprintln(b, "  inputs:")
	for _, c := range r.Components {
		lastExpr := ""
		for _, in := range c.Inputs {
			if in.Expr != "" && in.Expr != lastExpr {
				fmt.Fprintf(b, "    %s <- %s\n", c.Name, in.Expr)
				lastExpr = in.Expr
			}
			fmt.Fprintf(b, "      %s\n", formatInput(in))
		}
	}
}

func formatInput(in InputValue) string {
	s := in.Name
	if in.Region != "" {
		s += "{" + in.Region + "}"
	}
	if in.Value == nil {
		s += " = absent"
	} else {
		s += " = " + strconv.FormatFloat(*in.Value, 'g', 6, 64)
	}
	if in.Text != "" {
		s += " (" + in.Text + ")"
	}
	if in.Partial {
		s += " [partial]"
	}
	return s
}
