package slo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/common/model"
	"gopkg.in/yaml.v3"
)

// LoadConfig reads a configuration file strictly (unknown fields are errors with their line)
// and fills the defaults: period 30d, region label "region".
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes a configuration file's contents strictly and fills the defaults.
func ParseConfig(data []byte) (*Config, error) {
	cfg := &Config{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if cfg.Period == 0 {
		cfg.Period = model.Duration(DefaultPeriod)
	}
	if cfg.Period < 0 {
		return nil, fmt.Errorf("period: %s must be positive", cfg.Period)
	}
	if cfg.RegionLabel == "" {
		cfg.RegionLabel = DefaultRegionLabel
	}
	return cfg, nil
}

// Load reads the configuration file and the SLO spec files it lists (paths and globs relative
// to the configuration file's directory), parsed and validated. Spec problems are returned as
// Problems, one per line.
func Load(path string) (*Config, []SLO, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	files, err := SpecFiles(filepath.Dir(path), cfg.SLOFiles)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	slos, problems := parseFiles(cfg.RegionLabel, files...)
	if len(problems) > 0 {
		return nil, nil, problems
	}
	return cfg, slos, nil
}

// SpecFiles expands the slo_files patterns relative to dir. A pattern that matches nothing is
// an error: a mistyped path would otherwise silently drop SLOs.
func SpecFiles(dir string, patterns []string) ([]string, error) {
	var files []string
	for _, p := range patterns {
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		matches, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("slo_files %q: %w", p, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("slo_files %q: no such file", p)
		}
		files = append(files, matches...)
	}
	return files, nil
}

// EngineOptions returns the engine options the configuration implies.
func (c *Config) EngineOptions() Options {
	return Options{Period: time.Duration(c.Period), RegionLabel: c.RegionLabel, Regions: c.Regions}
}
