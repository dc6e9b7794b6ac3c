package dev

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFaultsChecksEachFlagValue(t *testing.T) {
	for _, tc := range []struct {
		kind    string
		specs   []string
		want    []Fault
		wantErr string
	}{
		{kind: FaultDown, specs: []string{"eu-west-1", "us-east-1"}, want: []Fault{{Kind: FaultDown, Region: "eu-west-1"}, {Kind: FaultDown, Region: "us-east-1"}}},
		{kind: FaultLatency, specs: []string{"eu-west-1=3s"}, want: []Fault{{Kind: FaultLatency, Region: "eu-west-1", Value: "3s"}}},
		{kind: FaultErrors, specs: []string{"ap-southeast-1=0.2"}, want: []Fault{{Kind: FaultErrors, Region: "ap-southeast-1", Value: "0.2"}}},
		{kind: FaultCapacity, specs: []string{"us-east-1=0.5"}, want: []Fault{{Kind: FaultCapacity, Region: "us-east-1", Value: "0.5"}}},
		{kind: FaultLatency, specs: []string{"eu-west-1"}, wantErr: `--latency "eu-west-1": want REGION=VALUE`},
		{kind: FaultLatency, specs: []string{"=3s"}, wantErr: "want REGION=VALUE"},
		{kind: FaultLatency, specs: []string{"eu-west-1=3"}, wantErr: "must be a duration"},
		{kind: FaultErrors, specs: []string{"eu-west-1=1.5"}, wantErr: "in [0, 1]"},
		{kind: FaultErrors, specs: []string{"eu-west-1=lots"}, wantErr: "in [0, 1]"},
		{kind: FaultCapacity, specs: []string{"eu-west-1=Inf"}, wantErr: "finite number >= 0"},
		{kind: "flood", specs: []string{"eu-west-1"}, wantErr: "unknown fault"},
	} {
		t.Run(tc.kind+" "+strings.Join(tc.specs, ","), func(t *testing.T) {
			got, err := ParseFaults(tc.kind, tc.specs)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNewRefusesBadSetupsBeforeBindingAnything(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = busy.Close() })
	badConfig := filepath.Join(t.TempDir(), "meridian.yml")
	require.NoError(t, os.WriteFile(badConfig, []byte("readiness:\n  topology: ring\n"), 0o644))

	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"fault in an unknown region", Config{Faults: []Fault{{Kind: FaultDown, Region: "mars-1"}}}, `region "mars-1": unknown region`},
		{"invalid configuration file", Config{ConfigFile: badConfig}, badConfig},
		{"missing configuration file", Config{ConfigFile: badConfig + ".missing"}, "read config"},
		{"busy querier address", Config{HTTPAddress: busy.Addr().String()}, "listen http " + busy.Addr().String()},
		{"negative step", Config{Step: -time.Second}, "step"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.DataDir = t.TempDir()
			if tc.cfg.HTTPAddress == "" {
				tc.cfg.HTTPAddress = "127.0.0.1:0"
			}
			_, err := New(tc.cfg)
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestFaultsGivenAtStartApplyFromTheFirstQuery(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "dev")
	faults, err := ParseFaults(FaultDown, []string{"us-east-1"})
	require.NoError(t, err)
	errs, err := ParseFaults(FaultErrors, []string{"ap-southeast-1=0.5"})
	require.NoError(t, err)
	// Registered before startEnv's, so it runs after the environment has stopped.
	t.Cleanup(func() {
		for _, r := range regionNames {
			require.DirExists(t, filepath.Join(dataDir, r), "a given data directory is kept on exit")
		}
	})
	env, base := startEnv(t, Config{DataDir: dataDir, Backfill: 10 * time.Minute, Faults: append(faults, errs...)})

	code, resp := call(t, http.MethodGet, base+ChaosPath)
	require.Equal(t, http.StatusOK, code)
	var states []RegionState
	require.NoError(t, json.Unmarshal(resp.Data, &states))
	byRegion := map[string]RegionState{}
	for _, st := range states {
		byRegion[st.Region] = st
	}
	require.True(t, byRegion["us-east-1"].Down)
	require.False(t, byRegion["eu-west-1"].Down)
	require.Equal(t, 0.5, byRegion["ap-southeast-1"].ErrorRatio)

	queryResp, regions := instantQuery(t, base, globalRequestRate, "")
	require.Equal(t, "success", queryResp.Status, queryResp.Error)
	require.ElementsMatch(t, []string{"eu-west-1", "ap-southeast-1"}, regions)
	t.Logf("warnings for a region down since the start: %q", queryResp.Warnings)
	require.True(t, warningNaming(queryResp.Warnings, `region "us-east-1" (store `+env.Info().Regions[1].StoreAPI+`)`),
		"warnings %v name us-east-1 and its store, although it never announced its labels", queryResp.Warnings)

	require.False(t, env.Info().TemporaryDataDir)
	require.FileExists(t, env.Info().ConfigFile)
}
