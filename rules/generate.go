package rules

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"gopkg.in/yaml.v3"

	"github.com/meridian-obs/meridian/slo"
)

// Splits of the generated SLO rules.
const (
	// SplitGlobal writes every rule for one ruler that sees all regions (Meridian's own, or
	// Thanos Ruler over meridian query).
	SplitGlobal = "global"
	// SplitRegional writes the per-region component rules (errors and totals rates) as one file
	// for each region's own Prometheus, and a global file that only combines the recorded
	// components: a handful of recorded series cross the WAN instead of raw counters.
	SplitRegional = "regional"
)

// DefaultRunbookBaseURL is the runbook document in the repository; each alert links to its own
// section (an anchor) of it.
const DefaultRunbookBaseURL = "https://github.com/meridian-obs/meridian/blob/main/docs/runbooks.md"

// Options shape the generated rules. Zero values take the defaults.
type Options struct {
	// Split is SplitGlobal (default) or SplitRegional.
	Split string
	// RunbookBaseURL prefixes every alert's runbook_url; default DefaultRunbookBaseURL.
	RunbookBaseURL string
	// For overrides the "for" duration of alerts by alert name, e.g. to exercise
	// MeridianFailoverNotReady in a test without waiting 10 minutes. Names not generated are
	// an error, so that a typo does not silently keep the default.
	For map[string]time.Duration
}

// PlatformRulesFile is the file of the platform alerts, which watch Meridian itself (stores,
// ingest, ruler) rather than a service's SLOs.
const PlatformRulesFile = "platform-rules.yml"

// File is one generated rule file: its name in the output directory and its groups.
type File struct {
	Name   string
	Groups []rulefmt.RuleGroup
}

// Generate builds the rule files for the configuration and its SLOs: the SLO recording and
// alerting rules (split as opts.Split says), the failover readiness alerts (when the
// configuration has a readiness section) and Meridian's platform alerts. Each file is
// checked by Prometheus's own rule parser before it is returned.
func Generate(cfg *slo.Config, slos []slo.SLO, opts Options) ([]File, error) {
	if opts.Split == "" {
		opts.Split = SplitGlobal
	}
	if opts.RunbookBaseURL == "" {
		opts.RunbookBaseURL = DefaultRunbookBaseURL
	}
	g := &generator{cfg: cfg, opts: opts, regionLabel: cfg.RegionLabel}
	if g.regionLabel == "" {
		g.regionLabel = slo.DefaultRegionLabel
	}
	var files []File
	switch opts.Split {
	case SplitGlobal:
		var groups []rulefmt.RuleGroup
		for _, s := range slos {
			sg, err := g.sloGroups(s, true)
			if err != nil {
				return nil, err
			}
			groups = append(groups, sg...)
		}
		if len(groups) > 0 {
			files = append(files, File{Name: "slo-rules.yml", Groups: groups})
		}
	case SplitRegional:
		if len(slos) > 0 && len(cfg.Regions) == 0 {
			return nil, errors.New("split regional: the configuration lists no regions (regions: [...]) to write a file for")
		}
		var global []rulefmt.RuleGroup
		regional := map[string][]rulefmt.RuleGroup{}
		for _, s := range slos {
			sg, err := g.sloGroups(s, false)
			if err != nil {
				return nil, err
			}
			global = append(global, sg...)
			for _, r := range cfg.Regions {
				cg, err := g.componentGroup(s, r)
				if err != nil {
					return nil, err
				}
				regional[r] = append(regional[r], cg)
			}
		}
		for _, r := range cfg.Regions {
			if len(regional[r]) > 0 {
				files = append(files, File{Name: "slo-rules-" + fileSafe(r) + ".yml", Groups: regional[r]})
			}
		}
		if len(global) > 0 {
			files = append(files, File{Name: "slo-rules-global.yml", Groups: global})
		}
	default:
		return nil, fmt.Errorf("split %q: must be %q or %q", opts.Split, SplitGlobal, SplitRegional)
	}
	if cfg.Readiness != nil {
		if err := cfg.Readiness.Validate(); err != nil {
			return nil, err
		}
		files = append(files, File{Name: "readiness-rules.yml", Groups: []rulefmt.RuleGroup{g.readinessGroup()}})
	}
	platform, err := g.platformGroup()
	if err != nil {
		return nil, err
	}
	files = append(files, File{Name: PlatformRulesFile, Groups: []rulefmt.RuleGroup{platform}})
	if err := g.applyFor(files); err != nil {
		return nil, err
	}
	for _, f := range files {
		if err := check(f); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// generator carries the configuration through the builders of each rule kind.
type generator struct {
	cfg         *slo.Config
	opts        Options
	regionLabel string
}

// applyFor sets the "for" overrides of opts.For on every alert of that name.
func (g *generator) applyFor(files []File) error {
	seen := map[string]bool{}
	for fi := range files {
		for gi := range files[fi].Groups {
			rs := files[fi].Groups[gi].Rules
			for ri := range rs {
				if d, ok := g.opts.For[rs[ri].Alert]; ok && rs[ri].Alert != "" {
					rs[ri].For = model.Duration(d)
					seen[rs[ri].Alert] = true
				}
			}
		}
	}
	var unknown []string
	for name := range g.opts.For {
		if !seen[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("for: no generated alert is named %s", strings.Join(unknown, ", "))
	}
	return nil
}

// check marshals a file and parses it back with Prometheus's rule parser, which validates
// every expression, label and template the way Prometheus does when it loads the file.
func check(f File) error {
	out, err := Marshal(f, FormatPrometheus)
	if err != nil {
		return err
	}
	if _, errs := rulefmt.Parse(out, false, model.UTF8Validation); len(errs) > 0 {
		return fmt.Errorf("generated %s does not load: %w", f.Name, errors.Join(errs...))
	}
	names := map[string]bool{}
	for _, gr := range f.Groups {
		if names[gr.Name] {
			return fmt.Errorf("generated %s: duplicate group %q", f.Name, gr.Name)
		}
		names[gr.Name] = true
	}
	return nil
}

// yamlNode encodes v with two-space indentation, as Prometheus's documentation writes rule files.
func marshalYAML(v any) ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// fileSafe turns a region name into a file name part.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// mergeMaps returns the union of maps, later ones winning; nil when all are empty.
func mergeMaps(ms ...map[string]string) map[string]string {
	var out map[string]string
	for _, m := range ms {
		for k, v := range m {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// sortedKeys returns the keys of m in order.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
