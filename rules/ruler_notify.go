package rules

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	commoncfg "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
)

// alertmanagerTarget is one --alertmanager.url: where the notifier posts (API v2) and how.
type alertmanagerTarget struct {
	url    *url.URL
	scheme string
	host   string
	prefix string
}

// parseAlertmanagers checks the Alertmanager URLs: http or https, a host, optional user
// and password for basic auth, an optional path prefix (an Alertmanager behind a proxy).
func parseAlertmanagers(raw []string) ([]alertmanagerTarget, error) {
	out := make([]alertmanagerTarget, 0, len(raw))
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("--alertmanager.url %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("--alertmanager.url %q: scheme must be http or https", s)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("--alertmanager.url %q: no host", s)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("--alertmanager.url %q: no query or fragment allowed", s)
		}
		out = append(out, alertmanagerTarget{url: u, scheme: u.Scheme, host: u.Host, prefix: strings.TrimRight(u.Path, "/")})
	}
	return out, nil
}

// notifierConfig is the Prometheus configuration equivalent to the flags: one alerting
// config per URL (each with its own scheme, prefix and credentials), API v2, and the ruler's
// external labels added to every alert that lacks them.
func notifierConfig(ams []alertmanagerTarget, timeout time.Duration, ext labels.Labels) *config.Config {
	cfg := &config.Config{GlobalConfig: config.DefaultGlobalConfig}
	cfg.GlobalConfig.ExternalLabels = ext
	for _, am := range ams {
		c := config.DefaultAlertmanagerConfig
		c.Scheme = am.scheme
		c.PathPrefix = am.prefix
		c.Timeout = model.Duration(timeout)
		c.APIVersion = config.AlertmanagerAPIVersionV2
		c.HTTPClientConfig = commoncfg.DefaultHTTPClientConfig
		if am.url.User != nil {
			pw, _ := am.url.User.Password()
			c.HTTPClientConfig.BasicAuth = &commoncfg.BasicAuth{Username: am.url.User.Username(), Password: commoncfg.Secret(pw)}
		}
		c.ServiceDiscoveryConfigs = discovery.Configs{discovery.StaticConfig{{
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(am.host)}},
			Source:  am.url.Redacted(),
		}}}
		cfg.AlertingConfig.AlertmanagerConfigs = append(cfg.AlertingConfig.AlertmanagerConfigs, &c)
	}
	return cfg
}

// runNotifier runs the notifier with the static Alertmanager targets, keyed as the
// notifier's ApplyConfig keys the alerting configs, until Stop.
func (r *Ruler) runNotifier() {
	tsets := make(chan map[string][]*targetgroup.Group, 1)
	groups := map[string][]*targetgroup.Group{}
	for i, am := range r.ams {
		groups[fmt.Sprintf("config-%d", i)] = []*targetgroup.Group{{
			Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(am.host)}},
			Source:  am.url.Redacted(),
		}}
	}
	tsets <- groups
	r.notifier.Run(tsets)
}
