package simulate

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/stretchr/testify/require"
)

func TestCountersStayMonotonicAcrossBackfillLiveAndControlChanges(t *testing.T) {
	s, clock := newTestSimulator(t)
	const region = "eu-west-1"
	backfill := generate(t, s, region, testStart.Add(-time.Hour), testStart, 15*time.Second)

	// Live, with controls changing between pushes, pushed at an uneven step.
	var live []map[string][]point
	now := testStart
	for _, change := range []func() error{
		func() error { return s.SetErrorRatio(region, 0.4) },
		func() error { return s.SetTrafficFactor(region, 0.05) },
		func() error { return s.SetTrafficFactor(region, 3) },
		func() error { return s.SetCapacityFactor(region, 0.5) },
		func() error { return s.SetErrorRatio(region, 0) },
	} {
		require.NoError(t, change())
		next := now.Add(9 * time.Minute)
		clock.Set(next)
		live = append(live, generate(t, s, region, now.Add(time.Millisecond), next, 7*time.Second))
		now = next
	}
	all := merge(append([]map[string][]point{backfill}, live...)...)
	requireMonotonic(t, all)

	// The counters moved during every live period, also at 5% traffic.
	for _, l := range live {
		var moved bool
		for key, pts := range l {
			if metricName(key) == "http_requests_total" && pts[len(pts)-1].v > pts[0].v {
				moved = true
			}
		}
		require.True(t, moved)
	}
}

func TestValuesArePureFunctionsOfTime(t *testing.T) {
	s, _ := newTestSimulator(t)
	twin, _ := newTestSimulator(t)
	other, _ := newTestSimulator(t, WithSeed(2))
	from, to := testStart.Add(-30*time.Minute), testStart

	coarse := generate(t, s, "us-east-1", from, to, time.Minute)
	fine := generate(t, s, "us-east-1", from, to, 15*time.Second)
	require.Equal(t, coarse, generate(t, twin, "us-east-1", from, to, time.Minute), "same seed and origin must give the same data")
	require.NotEqual(t, coarse, generate(t, other, "us-east-1", from, to, time.Minute), "another seed must give other data")

	// A minute-step sample equals the 15s-step sample at the same timestamp.
	compared := 0
	for key, pts := range coarse {
		byTime := map[int64]point{}
		for _, p := range fine[key] {
			byTime[p.t] = p
		}
		for _, p := range pts {
			f, ok := byTime[p.t]
			require.True(t, ok, "%s at %d missing from the fine series", key, p.t)
			require.Equal(t, p, f, key)
			compared++
		}
	}
	require.Greater(t, compared, 5000)
}

func TestMeasuredErrorRatioMatchesConfigured(t *testing.T) {
	for _, tc := range []struct {
		name   string
		region string
		ratio  float64 // 0: the profile's own
		want   float64
	}{
		{name: "profile default eu-west-1", region: "eu-west-1", want: 0.002},
		{name: "profile default ap-southeast-1", region: "ap-southeast-1", want: 0.004},
		{name: "burst of 5%", region: "us-east-1", ratio: 0.05, want: 0.05},
		{name: "burst of 30%", region: "us-east-1", ratio: 0.3, want: 0.3},
		{name: "total outage", region: "eu-west-1", ratio: 1, want: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, clock := newTestSimulator(t)
			if tc.ratio > 0 {
				require.NoError(t, s.SetErrorRatio(tc.region, tc.ratio))
			}
			end := testStart.Add(time.Hour)
			clock.Set(end)
			series := generate(t, s, tc.region, testStart, end, time.Minute)
			total := increase(series, isRequests, testStart.UnixMilli(), end.UnixMilli())
			bad := increase(series, isServerError, testStart.UnixMilli(), end.UnixMilli())
			require.Greater(t, total, 50000.0)
			require.InEpsilon(t, tc.want, bad/total, 0.05, "measured %v of %v", bad, total)

			// The window before the change still shows the profile's ratio.
			if tc.ratio > 0 {
				before := generate(t, s, tc.region, testStart.Add(-time.Hour), testStart, time.Minute)
				tot := increase(before, isRequests, testStart.Add(-time.Hour).UnixMilli(), testStart.UnixMilli())
				b := increase(before, isServerError, testStart.Add(-time.Hour).UnixMilli(), testStart.UnixMilli())
				require.InEpsilon(t, s.regions[tc.region].profile.ErrorRatio, b/tot, 0.1)
			}
		})
	}
}

func TestCapacityFactorHalvesAllocatableButNotUsage(t *testing.T) {
	s, clock := newTestSimulator(t)
	const region = "us-east-1"
	before := valuesAt(t, s, region, testStart)
	require.Equal(t, 128.0, sumWhere(before, isCPUAllocatable))

	require.NoError(t, s.SetCapacityFactor(region, 0.5))
	after := valuesAt(t, s, region, testStart.Add(time.Second))
	require.Equal(t, 64.0, sumWhere(after, isCPUAllocatable))
	clock.Set(testStart.Add(time.Hour))
	require.Equal(t, 64.0, sumWhere(valuesAt(t, s, region, testStart.Add(time.Hour)), isCPUAllocatable))

	// Usage over the next 5 minutes is what it would have been without the change.
	untouched, _ := newTestSimulator(t)
	usage := func(s *Simulator) float64 {
		a := sumWhere(valuesAt(t, s, region, testStart.Add(time.Second)), isContainerCPU)
		b := sumWhere(valuesAt(t, s, region, testStart.Add(5*time.Minute+time.Second)), isContainerCPU)
		return (b - a) / 300
	}
	require.InDelta(t, usage(untouched), usage(s), 1e-9)
}

func TestCPUUtilisationStaysInTheRealisticRange(t *testing.T) {
	s, _ := newTestSimulator(t)
	for _, region := range s.Regions() {
		for h := range 24 {
			at := testStart.Add(time.Duration(h) * time.Hour)
			series := generate(t, s, region, at, at.Add(5*time.Minute), 5*time.Minute)
			usage := increase(series, isContainerCPU, at.UnixMilli(), at.Add(5*time.Minute).UnixMilli()) / 300
			var capacity float64
			for key, pts := range series {
				if isCPUAllocatable(key) {
					capacity += pts[0].v
				}
			}
			util := usage / capacity
			require.True(t, util >= 0.25 && util <= 0.65, "%s at %v: utilisation %.2f", region, at, util)
		}
	}
}

func TestTrafficPeaksAtDifferentHoursPerRegion(t *testing.T) {
	s, _ := newTestSimulator(t)
	peaks := map[string]int{}
	for _, region := range s.Regions() {
		best := -1.0
		for h := range 24 {
			at := testStart.Add(time.Duration(h) * time.Hour)
			rate := increase(generate(t, s, region, at, at.Add(5*time.Minute), 5*time.Minute), isRequests, at.UnixMilli(), at.Add(5*time.Minute).UnixMilli())
			if rate > best {
				best, peaks[region] = rate, at.Hour()
			}
		}
	}
	require.Equal(t, map[string]int{"eu-west-1": 13, "us-east-1": 18, "ap-southeast-1": 5}, peaks)
}

func TestOneRegionRunsAVersionBehind(t *testing.T) {
	s, _ := newTestSimulator(t)
	versions := map[string]map[string]bool{} // "region/deployment" -> versions
	var b labels.ScratchBuilder
	for _, region := range s.Regions() {
		reqs, err := s.WriteRequests(region, testStart, testStart, time.Second)
		require.NoError(t, err)
		for _, wr := range reqs {
			for _, ts := range wr.Timeseries {
				l := ts.ToLabels(&b, nil)
				if l.Get(labels.MetricName) != "app_build_info" {
					continue
				}
				require.Equal(t, 1.0, ts.Samples[0].Value)
				require.NotEmpty(t, l.Get("revision"))
				require.NotEmpty(t, l.Get("goversion"))
				k := region + "/" + l.Get("deployment")
				if versions[k] == nil {
					versions[k] = map[string]bool{}
				}
				versions[k][l.Get("version")] = true
			}
		}
	}
	require.Len(t, versions, 9)
	for _, dep := range []string{"frontend", "payments"} {
		require.Equal(t, versions["eu-west-1/"+dep], versions["ap-southeast-1/"+dep], dep)
	}
	require.Equal(t, map[string]bool{"2.14.0": true}, versions["eu-west-1/checkout"])
	require.Equal(t, map[string]bool{"2.14.0": true}, versions["us-east-1/checkout"])
	require.Equal(t, map[string]bool{"2.13.4": true}, versions["ap-southeast-1/checkout"])
}

func TestRegionLabelOnlyWhenAsked(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []Option
		label string
	}{
		{name: "default has none"},
		{name: "region label", opts: []Option{WithRegionLabel("")}, label: "region"},
		{name: "custom name", opts: []Option{WithRegionLabel("site")}, label: "site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestSimulator(t, tc.opts...)
			series := generate(t, s, "ap-southeast-1", testStart, testStart, time.Second)
			require.NotEmpty(t, series)
			for key := range series {
				if tc.label == "" {
					require.NotContains(t, key, `="ap-southeast-1"`)
					continue
				}
				require.Contains(t, key, tc.label+`="ap-southeast-1"`)
			}
		})
	}
}

func TestGaugesFollowControls(t *testing.T) {
	s, clock := newTestSimulator(t)
	const region = "eu-west-1"
	lag := func(v map[string]float64) float64 {
		return sumWhere(v, func(k string) bool { return metricName(k) == "meridian_replication_lag_seconds" }) / float64(len(databases))
	}
	v := valuesAt(t, s, region, testStart)
	require.InDelta(t, 0.5, lag(v), 0.5*0.25+1e-9)
	require.Equal(t, float64(testStart.Truncate(24*time.Hour).Add(-12*24*time.Hour).Unix()),
		sumWhere(v, func(k string) bool { return metricName(k) == "meridian_failover_drill_last_success_timestamp_seconds" }))
	require.Equal(t, 9.0, sumWhere(v, func(k string) bool { return metricName(k) == "kube_deployment_status_replicas_available" }))
	ups := 0
	for k, val := range v {
		if metricName(k) == "up" {
			ups++
			require.Equal(t, 1.0, val, k)
		}
	}
	require.Equal(t, 9+6+3, ups, "9 app pods, 6 kubelets, kube-state-metrics, replication monitor, drill")

	require.NoError(t, s.SetLagSeconds(region, 120))
	clock.Set(testStart.Add(time.Minute))
	require.InDelta(t, 120, lag(valuesAt(t, s, region, testStart.Add(time.Minute))), 120*0.25)
	c, err := s.Controls(region)
	require.NoError(t, err)
	require.Equal(t, Controls{ErrorRatio: 0.002, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: 120}, c)
}

func TestControlsRejectBadValuesAndUnknownRegions(t *testing.T) {
	s, _ := newTestSimulator(t)
	for _, tc := range []struct {
		name string
		set  func() error
	}{
		{"negative error ratio", func() error { return s.SetErrorRatio("eu-west-1", -0.1) }},
		{"error ratio above one", func() error { return s.SetErrorRatio("eu-west-1", 1.5) }},
		{"NaN error ratio", func() error { return s.SetErrorRatio("eu-west-1", math.NaN()) }},
		{"negative capacity", func() error { return s.SetCapacityFactor("eu-west-1", -1) }},
		{"infinite traffic", func() error { return s.SetTrafficFactor("eu-west-1", math.Inf(1)) }},
		{"negative lag", func() error { return s.SetLagSeconds("eu-west-1", -3) }},
		{"unknown region", func() error { return s.SetErrorRatio("mars-1", 0.1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Error(t, tc.set())
		})
	}
	_, err := s.Controls("mars-1")
	require.ErrorIs(t, err, ErrUnknownRegion)
	c, err := s.Controls("eu-west-1")
	require.NoError(t, err)
	require.Equal(t, Controls{ErrorRatio: 0.002, CapacityFactor: 1, TrafficFactor: 1, LagSeconds: 0.5}, c, "rejected values change nothing")
}

func TestNewRejectsInvalidProfiles(t *testing.T) {
	good := DefaultProfiles()[0]
	for _, tc := range []struct {
		name string
		opts []Option
		want string
	}{
		{"duplicate region", []Option{WithProfiles(good, good)}, "defined twice"},
		{"no nodes", []Option{WithProfiles(func() RegionProfile { p := good; p.Nodes = 0; return p }())}, "nodes"},
		{"amplitude of one", []Option{WithProfiles(func() RegionProfile { p := good; p.DiurnalAmplitude = 1; return p }())}, "amplitude"},
		{"unknown deployment version", []Option{WithProfiles(func() RegionProfile {
			p := good
			p.Versions = map[string]string{"billing": "1.0.0"}
			return p
		}())}, "billing"},
		{"empty region list", []Option{WithProfiles()}, "no regions"},
		{"zero batch size", []Option{WithMaxSamplesPerRequest(0)}, "max samples"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts...)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestConcurrentControlsAndGeneration(t *testing.T) {
	s, _ := newTestSimulator(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 50 {
				require.NoError(t, s.SetErrorRatio("eu-west-1", float64(j%10)/100))
				require.NoError(t, s.SetTrafficFactor("eu-west-1", float64(i+1)))
			}
		})
		wg.Go(func() {
			for range 5 {
				_, err := s.WriteRequests("eu-west-1", testStart.Add(-time.Minute), testStart, 15*time.Second)
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
}
