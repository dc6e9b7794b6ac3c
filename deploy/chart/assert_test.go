package chart

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

func typed[T any](t *testing.T, o Object) T {
	t.Helper()
	obj, err := DecodeStrict(o.Raw)
	require.NoError(t, err, "%s", o)
	v, ok := obj.(T)
	require.True(t, ok, "%s decodes to %T", o, obj)
	return v
}

// podSpecs returns every pod template of a release: StatefulSets, Deployments and Jobs.
func podSpecs(t *testing.T, r *Release) map[string]corev1.PodTemplateSpec {
	t.Helper()
	out := map[string]corev1.PodTemplateSpec{}
	for _, o := range r.Objects {
		switch o.Kind() {
		case "StatefulSet":
			sts := typed[*appsv1.StatefulSet](t, o)
			tmpl := *sts.Spec.Template.DeepCopy()
			// Each claim template becomes a volume of the pod of the same name.
			for _, pvc := range sts.Spec.VolumeClaimTemplates {
				tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: pvc.Name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
			}
			out[o.String()] = tmpl
		case "Deployment":
			out[o.String()] = typed[*appsv1.Deployment](t, o).Spec.Template
		case "Job":
			out[o.String()] = typed[*batchv1.Job](t, o).Spec.Template
		case "DaemonSet", "ReplicaSet", "CronJob", "Pod":
			t.Fatalf("%s: a workload kind this test does not inspect", o)
		}
	}
	return out
}

func TestEveryContainerIsLockedDown(t *testing.T) {
	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			pods := podSpecs(t, render(t, ch, tc.release, tc.values, MonitoringAPI))
			require.NotEmpty(t, pods)
			for name, pod := range pods {
				psc := pod.Spec.SecurityContext
				require.NotNil(t, psc, name)
				require.True(t, *psc.RunAsNonRoot, name)
				require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, psc.SeccompProfile.Type, name)
				require.False(t, *pod.Spec.AutomountServiceAccountToken, name)
				containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
				for _, c := range containers {
					sc := c.SecurityContext
					where := name + " container " + c.Name
					require.NotNil(t, sc, where)
					require.True(t, *sc.RunAsNonRoot, where)
					require.Equal(t, int64(65532), *sc.RunAsUser, where)
					require.True(t, *sc.ReadOnlyRootFilesystem, where)
					require.False(t, *sc.AllowPrivilegeEscalation, where)
					require.False(t, *sc.Privileged, where)
					require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, where)
					require.Empty(t, sc.Capabilities.Add, where)
					require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type, where)
				}
			}
		})
	}
}

func TestServiceMonitorAndPrometheusRuleOnlyWhenTheAPIIsServed(t *testing.T) {
	ch, _, _ := load(t)
	for _, tc := range valuesCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			with := render(t, ch, tc.release, tc.values, MonitoringAPI)
			require.Len(t, with.OfKind("ServiceMonitor"), 1)
			require.Len(t, with.OfKind("PrometheusRule"), 1)
			without := render(t, ch, tc.release, tc.values)
			require.Empty(t, without.OfKind("ServiceMonitor"))
			require.Empty(t, without.OfKind("PrometheusRule"))
			require.Len(t, without.Objects, len(with.Objects)-2, "nothing else depends on the API")

			// The ServiceMonitor selects the HTTP Service, on its http port.
			sm := with.OfKind("ServiceMonitor")[0].Content
			sel := labels.SelectorFromSet(toStringMap(dig(sm, "spec", "selector", "matchLabels")))
			var selected []string
			for _, o := range with.OfKind("Service") {
				if sel.Matches(labels.Set(typed[*corev1.Service](t, o).Labels)) {
					selected = append(selected, o.Name())
				}
			}
			require.Equal(t, []string{tc.release}, selected)
		})
	}
}

// TestGlobalEndpointsAreRegionServices follows each endpoint of a global release to the region
// release it names: the Service must exist there with that port, route to the ingest pods' gRPC
// port, and those pods must announce the region.
func TestGlobalEndpointsAreRegionServices(t *testing.T) {
	ch, _, _ := load(t)
	for _, dir := range []string{filepath.Join(chartDir, "ci"), filepath.Join(examplesDir, "active-active"), filepath.Join(examplesDir, "active-passive")} {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
			require.NoError(t, err)
			regions := map[string]*Release{} // region -> release
			var global map[string]any
			for _, f := range files {
				v := readValues(t, f)
				if v["mode"] == "global" {
					global = v
					continue
				}
				regions[dig(v, "ingest", "region").(string)] = render(t, ch, releaseName(v), v)
			}
			require.NotNil(t, global)
			g := render(t, ch, "meridian-global", global)
			dep := typed[*appsv1.Deployment](t, g.OfKind("Deployment")[0])
			var endpoints []string
			for _, a := range dep.Spec.Template.Spec.Containers[0].Args {
				if v, ok := strings.CutPrefix(a, "--endpoint="); ok {
					endpoints = append(endpoints, v)
				}
			}
			sd, _ := dig(global, "query", "sdConfig").([]any)
			for _, e := range sd {
				for _, target := range dig(e.(map[string]any), "targets").([]any) {
					endpoints = append(endpoints, "dns+"+target.(string))
				}
			}
			require.NotEmpty(t, endpoints)
			reached := map[string]bool{}
			for _, e := range endpoints {
				region := resolveEndpoint(t, e, regions)
				reached[region] = true
			}
			require.Len(t, reached, len(regions), "every region release is read by the global release")
			// The SLO configuration expects exactly the regions installed.
			if want, ok := dig(global, "slo", "config", "regions").([]any); ok {
				require.Len(t, want, len(regions))
				for _, r := range want {
					require.Contains(t, regions, r)
				}
			}
		})
	}
}

// resolveEndpoint finds the region release whose Service an endpoint names, checks the port, and
// returns the region.
func resolveEndpoint(t *testing.T, endpoint string, regions map[string]*Release) string {
	t.Helper()
	var host string
	port := 0
	switch {
	case strings.HasPrefix(endpoint, "dnssrv+"):
		// SRV names are _<port name>._<proto>.<service>.<namespace>.svc.<domain>.
		name := strings.TrimPrefix(endpoint, "dnssrv+")
		parts := strings.SplitN(name, ".", 3)
		require.Len(t, parts, 3, endpoint)
		require.Equal(t, "_grpc", parts[0], "%s: the SRV record of the port named grpc", endpoint)
		require.Equal(t, "_tcp", parts[1], endpoint)
		host = parts[2]
	case strings.HasPrefix(endpoint, "dns+"):
		h, p, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "dns+"))
		require.NoError(t, err, endpoint)
		host = h
		port, err = strconv.Atoi(p)
		require.NoError(t, err)
	default:
		t.Fatalf("%s: the examples name stores by DNS", endpoint)
	}
	for region, r := range regions {
		for _, o := range r.OfKind("Service") {
			svc := typed[*corev1.Service](t, o)
			inCluster := host == fmt.Sprintf("%s.%s.svc.cluster.local", svc.Name, svc.Namespace)
			external := svc.Annotations["external-dns.alpha.kubernetes.io/hostname"] == host
			if !inCluster && !external {
				continue
			}
			var grpc *corev1.ServicePort
			for i := range svc.Spec.Ports {
				if svc.Spec.Ports[i].Name == "grpc" {
					grpc = &svc.Spec.Ports[i]
				}
			}
			require.NotNil(t, grpc, "%s: Service %s has no grpc port", endpoint, svc.Name)
			if port != 0 {
				require.Equal(t, int32(port), grpc.Port, endpoint)
			}
			if strings.HasPrefix(endpoint, "dnssrv+") {
				require.Equal(t, corev1.ClusterIPNone, svc.Spec.ClusterIP, "%s: SRV records of every pod need a headless Service", endpoint)
			}
			// The Service routes to the ingest pods' grpc port, and they announce the region.
			sts := typed[*appsv1.StatefulSet](t, r.OfKind("StatefulSet")[0])
			require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)), endpoint)
			c := sts.Spec.Template.Spec.Containers[0]
			require.Equal(t, "grpc", grpc.TargetPort.String())
			var containerPort int32
			for _, p := range c.Ports {
				if p.Name == "grpc" {
					containerPort = p.ContainerPort
				}
			}
			require.Contains(t, c.Args, fmt.Sprintf("--grpc-address=0.0.0.0:%d", containerPort))
			require.Contains(t, c.Args, "--label=region="+region)
			return region
		}
	}
	t.Fatalf("%s: no region release has that Service", endpoint)
	return ""
}

func TestNotesPrintRemoteWriteForEveryReplica(t *testing.T) {
	ch, _, _ := load(t)
	v := readValues(t, filepath.Join(examplesDir, "active-active", "region-eu-west-1.yaml"))
	r := render(t, ch, "meridian-eu-west-1", v)
	for i := range 2 {
		url := fmt.Sprintf("http://meridian-eu-west-1-%d.meridian-eu-west-1-grpc.meridian.svc:10902/api/v1/write", i)
		require.Equal(t, 2, strings.Count(r.Notes, "- url: "+url), "prometheus.yml and kube-prometheus-stack forms:\n%s", r.Notes)
	}
	// Both snippets are YAML a user can paste.
	for _, marker := range []string{"remote_write:", "prometheus:\n  prometheusSpec:"} {
		i := strings.Index(r.Notes, marker)
		require.GreaterOrEqual(t, i, 0, marker)
		block := r.Notes[i:]
		block = block[:strings.Index(block, "\n\n")]
		var parsed map[string]any
		require.NoError(t, yaml.UnmarshalStrict([]byte(block), &parsed), block)
	}
	// The example keeps exemplars, so its Prometheus is told to send them, in both forms.
	require.Contains(t, r.Notes, "    send_exemplars: true\n")
	require.Contains(t, r.Notes, "        sendExemplars: true\n")
	// The pod DNS names exist: the StatefulSet is governed by that headless Service.
	sts := typed[*appsv1.StatefulSet](t, r.OfKind("StatefulSet")[0])
	require.Contains(t, sts.Spec.Template.Spec.Containers[0].Args, "--tsdb.max-exemplars=100000")
	require.Equal(t, "meridian-eu-west-1-grpc", sts.Spec.ServiceName)
	_, ok := r.Find("Service", "meridian-eu-west-1-grpc")
	require.True(t, ok)
	// Exemplar storage is off by default (as in Thanos Receive): no sender is asked for them.
	def := render(t, ch, "meridian-x", readValues(t, filepath.Join(chartDir, "ci", "region-values.yaml")))
	require.NotContains(t, def.Notes, "xemplars")
	defSts := typed[*appsv1.StatefulSet](t, def.OfKind("StatefulSet")[0])
	require.Contains(t, defSts.Spec.Template.Spec.Containers[0].Args, "--tsdb.max-exemplars=0")
}

func TestExampleSpecsAreTheRepositorys(t *testing.T) {
	for _, f := range []string{filepath.Join(examplesDir, "active-active", "global.yaml"), filepath.Join(examplesDir, "active-passive", "global.yaml")} {
		specs := dig(readValues(t, f), "slo", "specs").(map[string]any)
		files, err := filepath.Glob("../../examples/slos/*.yaml")
		require.NoError(t, err)
		require.Len(t, specs, len(files), f)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			require.Equal(t, string(b), specs[filepath.Base(file)], "%s: %s differs from examples/slos", f, filepath.Base(file))
		}
	}
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func toStringMap(v any) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}
