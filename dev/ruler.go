package dev

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/meridian-obs/meridian/rules"
	"github.com/meridian-obs/meridian/slo"
)

// RulerLabel is the external label of the dev ruler's series and alerts.
var RulerLabel = labels.FromStrings("ruler", "global")

// openRuleStore opens the ruler's TSDB under the data directory (DataDir/ruler), so that a
// restart on the same directory keeps what was recorded.
func (e *Env) openRuleStore() error {
	var err error
	e.ruleStore, err = rules.OpenStore(rules.StoreOptions{
		Dir:            filepath.Join(e.cfg.DataDir, "ruler"),
		ExternalLabels: RulerLabel,
		Logger:         e.logger.With("component", "ruler"),
	})
	return err
}

// buildRuler writes the rules generated from the configuration into DataDir/rules, as
// `meridian rules generate` would, and builds the global ruler on them, in the querier, as
// `meridian query --rule-file` does: same files, same evaluation interval as the SLO engine.
func (e *Env) buildRuler(reg *prometheus.Registry, sloCfg *slo.Config, slos []slo.SLO) error {
	files, err := rules.Generate(sloCfg, slos, rules.Options{For: e.cfg.AlertFor})
	if err != nil {
		return fmt.Errorf("generate rules from %s: %w", e.configPath, err)
	}
	dir := filepath.Join(e.cfg.DataDir, "rules")
	if err := rules.WriteDir(dir, files, rules.FormatPrometheus); err != nil {
		return err
	}
	e.ruleDir = dir
	e.ruler, err = rules.NewRuler(rules.RulerOptions{
		Logger:             e.logger.With("component", "ruler"),
		Registerer:         reg,
		RuleFiles:          []string{filepath.Join(dir, "*.yml"), filepath.Join(dir, "*.yaml")},
		EvaluationInterval: e.cfg.EvaluationInterval,
		Queryable:          e.querier.Queryable(),
		Store:              e.ruleStore,
		Alertmanagers:      e.cfg.Alertmanagers,
		QueryURL:           "http://" + e.querier.HTTPAddr(),
		SelfRecord:         true,
		Gatherer:           reg,
		SelfInstance:       e.querier.HTTPAddr(),
	})
	if err != nil {
		return err
	}
	e.querier.ServeRules(e.ruler)
	e.ruler.Register(e.querier.Router())
	return nil
}

// runRuler evaluates the rules once the environment is ready (the backfill is stored: rules
// evaluated before would see windows without their history), until ctx ends.
func (e *Env) runRuler(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-e.ready:
	}
	return e.ruler.Run(ctx)
}
