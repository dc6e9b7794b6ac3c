package ingest

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestParseExternalLabels(t *testing.T) {
	for _, tc := range []struct {
		name    string
		flags   []string
		want    labels.Labels
		wantErr string
	}{
		{name: "plain value", flags: []string{"region=eu-west-1"}, want: labels.FromStrings("region", "eu-west-1")},
		{name: "quoted value thanos style", flags: []string{`region="eu-west-1"`}, want: labels.FromStrings("region", "eu-west-1")},
		{name: "quoted value may contain equals and spaces", flags: []string{`note="a=b c"`}, want: labels.FromStrings("note", "a=b c")},
		{name: "several labels are sorted", flags: []string{"replica=a", "region=us-east-1"}, want: labels.FromStrings("region", "us-east-1", "replica", "a")},
		{name: "none given", flags: nil, wantErr: "at least one --label is required"},
		{name: "no equals sign", flags: []string{"region"}, wantErr: "expected name=value"},
		{name: "invalid name", flags: []string{"1region=x"}, wantErr: "not a valid label name"},
		{name: "reserved name", flags: []string{"__name__=x"}, wantErr: "reserved"},
		{name: "empty value", flags: []string{"region="}, wantErr: "must not be empty"},
		{name: "empty quoted value", flags: []string{`region=""`}, wantErr: "must not be empty"},
		{name: "broken quoting", flags: []string{`region="eu`}, wantErr: "unquote value"},
		{name: "duplicate name", flags: []string{"region=a", `region="b"`}, wantErr: `label name "region" given more than once`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseExternalLabels(tc.flags)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{ExternalLabels: labels.FromStrings("region", "r"), TSDBPath: "d", HTTPAddress: ":0", GRPCAddress: ":0"}
	}
	for _, tc := range []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "no external labels", mutate: func(c *Config) { c.ExternalLabels = labels.EmptyLabels() }, wantErr: "at least one external label"},
		{name: "no tsdb path", mutate: func(c *Config) { c.TSDBPath = "" }, wantErr: "tsdb path"},
		{name: "negative retention", mutate: func(c *Config) { c.Retention = -1 }, wantErr: "retention time"},
		{name: "negative out-of-order window", mutate: func(c *Config) { c.OutOfOrderTimeWindow = -1 }, wantErr: "out-of-order"},
		{name: "tls cert without key", mutate: func(c *Config) { c.GRPCTLS.CertFile = "c" }, wantErr: "both a certificate and a key"},
		{name: "client ca without cert", mutate: func(c *Config) { c.GRPCTLS.ClientCAFile = "ca" }, wantErr: "client CA needs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid()
			tc.mutate(&c)
			err := c.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}
