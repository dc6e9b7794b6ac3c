package chart

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// etcdBinary is Debian's etcd-server; `make deps` installs it.
const etcdBinary = "/usr/bin/etcd"

// TestInstallIntoARealAPIServer installs the chart with Helm's install action, as `helm install`
// does, into a real kube-apiserver (KubeVersion's release, built by `make kube-apiserver`) over
// a real etcd: every values file, both modes, each example. The API server decodes, defaults,
// validates (strict field validation, as Helm 4's server-side apply asks) and stores every
// object, the Prometheus Operator's CRDs included; the Capabilities gate is read from its real
// discovery, closed before the CRDs are installed and open after. No controller runs, so no pod
// starts: what is checked is that the API server accepts every object, not that Meridian runs.
func TestInstallIntoARealAPIServer(t *testing.T) {
	apiserver := os.Getenv("KUBE_APISERVER_BINARY")
	require.NotEmpty(t, apiserver, "KUBE_APISERVER_BINARY is not set: run `make chart-test` (it builds bin/kube-apiserver)")
	_, err := os.Stat(etcdBinary)
	require.NoError(t, err, "the chart tests need Debian's etcd-server (run `make deps`)")
	ch, _, _ := load(t)

	dir := t.TempDir()
	pki := newAPIServerPKI(t, dir)
	etcdURL := startEtcd(t, dir)
	server := startAPIServer(t, apiserver, dir, etcdURL, pki)
	kubeconfig := writeKubeconfig(t, dir, server, pki)

	cases := valuesCases(t)
	t.Run("the gate is closed without the CRDs", func(t *testing.T) {
		vc := caseNamed(t, cases, "ci/region-values.yaml")
		rel := install(t, kubeconfig, ch, "gate-closed", vc.release, vc.values)
		require.NotContains(t, rel.Manifest, "kind: ServiceMonitor")
		require.NotContains(t, rel.Manifest, "kind: PrometheusRule")
		uninstall(t, kubeconfig, "gate-closed", vc.release)
	})

	promop, err := ModuleDir(PrometheusOperatorModule)
	require.NoError(t, err)
	crdDir := filepath.Join(promop, "example", "prometheus-operator-crd")
	createFiles(t, kubeconfig, "default",
		filepath.Join(crdDir, "monitoring.coreos.com_servicemonitors.yaml"),
		filepath.Join(crdDir, "monitoring.coreos.com_prometheusrules.yaml"))
	waitServed(t, kubeconfig, "monitoring.coreos.com/v1", "servicemonitors", "prometheusrules")
	createNamespace(t, kubeconfig, "monitoring") // where the examples put the dashboards

	for i, vc := range cases {
		t.Run(vc.name, func(t *testing.T) {
			ns := fmt.Sprintf("case-%d", i)
			rel := install(t, kubeconfig, ch, ns, vc.release, vc.values)
			if enabled(vc.values, "metrics", "serviceMonitor", "enabled") {
				require.Contains(t, rel.Manifest, "kind: ServiceMonitor", "the gate opens with the CRD served")
			}
			if enabled(vc.values, "prometheusRule", "enabled") {
				require.Contains(t, rel.Manifest, "kind: PrometheusRule", "the gate opens with the CRD served")
			}
			// Hooks (the dashboards provisioning Job) are created as objects: with no controller
			// running, a Job never completes, and Helm would wait for it.
			kc := kubeClient(kubeconfig, ns)
			for _, h := range rel.Hooks {
				resources, err := kc.Build(strings.NewReader(h.Manifest), true)
				require.NoError(t, err, h.Path)
				_, err = kc.Create(resources, kube.ClientCreateOptionServerSideApply(true, false))
				require.NoError(t, err, "hook %s", h.Path)
			}
			// Everything Helm created is stored, as the chart rendered it.
			stored, err := kc.Build(strings.NewReader(rel.Manifest), false)
			require.NoError(t, err)
			require.NotEmpty(t, stored)
			for _, info := range stored {
				require.NoError(t, info.Get(), "%s %s/%s", info.Mapping.GroupVersionKind.Kind, info.Namespace, info.Name)
			}
			t.Logf("%s: %d objects and %d hooks accepted", vc.name, len(stored), len(rel.Hooks))
			uninstall(t, kubeconfig, ns, vc.release)
		})
	}

	t.Run("the API server refuses what the values schema lets through", func(t *testing.T) {
		// A typo inside a pass-through Kubernetes field is not values.schema.json's to catch.
		vc := caseNamed(t, cases, "ci/region-values.yaml")
		values := with(t, vc.file, "tolerations: [{key: dedicated, efect: NoSchedule}]")
		createNamespace(t, kubeconfig, "broken")
		cfg := helmConfig(t, kubeconfig, "broken")
		inst := newInstall(cfg, "broken", vc.release)
		_, err := inst.Run(ch, values)
		require.Error(t, err)
		require.Contains(t, err.Error(), "efect")
		t.Log(err)
	})
}

func caseNamed(t *testing.T, cases []valuesCase, name string) valuesCase {
	t.Helper()
	for _, c := range cases {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no values file %s", name)
	return valuesCase{}
}

func enabled(values map[string]any, path ...string) bool {
	b, _ := dig(values, path...).(bool)
	return b
}

// freePort is a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon runs a process until the test ends, its output in a file that the test prints
// when it fails.
func startDaemon(t *testing.T, dir, name, bin string, args ...string) {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start(), name)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("%s output (end):\n%s", name, b)
		}
	})
}

// startEtcd runs a one-member etcd on loopback and waits until it is healthy.
func startEtcd(t *testing.T, dir string) string {
	t.Helper()
	client := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startDaemon(t, dir, "etcd", etcdBinary,
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer)
	waitFor(t, "etcd", time.Minute, func() (bool, error) {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"health":"true"`)), nil
	})
	return client
}

// startAPIServer runs kube-apiserver over etcdURL on loopback, serving TLS with the PKI's
// certificate and admitting the PKI's client (system:masters) through RBAC, and waits until
// /readyz answers 200.
func startAPIServer(t *testing.T, bin, dir, etcdURL string, pki *apiserverPKI) string {
	t.Helper()
	port := freePort(t)
	startDaemon(t, dir, "kube-apiserver", bin,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", pki.servingCertFile, "--tls-private-key-file", pki.servingKey,
		"--client-ca-file", pki.caFile,
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", pki.saPublicKey, "--service-account-signing-key-file", pki.saSigningKey,
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--authorization-mode", "RBAC",
		"--cert-dir", filepath.Join(dir, "apiserver-certs"))
	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	cfg := restConfig(server, pki)
	hc, err := rest.HTTPClientFor(cfg)
	require.NoError(t, err)
	waitFor(t, "kube-apiserver /readyz", 2*time.Minute, func() (bool, error) {
		resp, err := hc.Get(server + "/readyz")
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return false, fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return true, nil
	})
	return server
}

func restConfig(server string, pki *apiserverPKI) *rest.Config {
	return &rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{CAData: pki.caCert, CertData: pki.clientCert, KeyData: pki.clientKey}}
}

// writeKubeconfig is a kubeconfig for the PKI's client, as Helm reads it.
func writeKubeconfig(t *testing.T, dir, server string, pki *apiserverPKI) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: pki.caCert}
	cfg.AuthInfos["test"] = &clientcmdapi.AuthInfo{ClientCertificateData: pki.clientCert, ClientKeyData: pki.clientKey}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "test"}
	cfg.CurrentContext = "test"
	path := filepath.Join(dir, "kubeconfig")
	require.NoError(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

func waitFor(t *testing.T, what string, timeout time.Duration, ready func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := ready()
		if ok {
			return
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s: %v", what, timeout, last)
}

// restGetter reads kubeconfig, with its discovery cache in a directory of its own so that a
// new getter sees the API server's current resources.
func restGetter(kubeconfig, namespace string) genericclioptions.RESTClientGetter {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &namespace
	cache := filepath.Join(filepath.Dir(kubeconfig), "cache", fmt.Sprint(time.Now().UnixNano()))
	flags.CacheDir = &cache
	return flags
}

func kubeClient(kubeconfig, namespace string) *kube.Client {
	kc := kube.New(restGetter(kubeconfig, namespace))
	kc.Namespace = namespace
	return kc
}

func helmConfig(t *testing.T, kubeconfig, namespace string) *action.Configuration {
	t.Helper()
	cfg := action.NewConfiguration()
	require.NoError(t, cfg.Init(restGetter(kubeconfig, namespace), namespace, "secret"))
	return cfg
}

// newInstall is `helm install --namespace NS --create-namespace --no-hooks NAME`: hooks are
// created by the caller, since a Job never completes without controllers.
func newInstall(cfg *action.Configuration, namespace, name string) *action.Install {
	inst := action.NewInstall(cfg)
	inst.ReleaseName = name
	inst.Namespace = namespace
	inst.CreateNamespace = true
	inst.DisableHooks = true
	inst.WaitStrategy = kube.HookOnlyStrategy
	inst.Timeout = time.Minute
	return inst
}

func install(t *testing.T, kubeconfig string, ch *chartv2.Chart, namespace, name string, values map[string]any) *release.Release {
	t.Helper()
	rel, err := newInstall(helmConfig(t, kubeconfig, namespace), namespace, name).RunWithContext(context.Background(), ch, values)
	require.NoError(t, err, "helm install %s -n %s", name, namespace)
	r, ok := rel.(*release.Release)
	require.True(t, ok, "release type %T", rel)
	return r
}

func uninstall(t *testing.T, kubeconfig, namespace, name string) {
	t.Helper()
	un := action.NewUninstall(helmConfig(t, kubeconfig, namespace))
	un.DisableHooks = true
	un.WaitStrategy = kube.HookOnlyStrategy
	_, err := un.Run(name)
	require.NoError(t, err, "helm uninstall %s -n %s", name, namespace)
}

// createFiles creates the objects of the manifest files (the CRDs).
func createFiles(t *testing.T, kubeconfig, namespace string, files ...string) {
	t.Helper()
	kc := kubeClient(kubeconfig, namespace)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		resources, err := kc.Build(bytes.NewReader(b), false)
		require.NoError(t, err, f)
		_, err = kc.Create(resources, kube.ClientCreateOptionServerSideApply(true, false))
		require.NoError(t, err, f)
	}
}

func createNamespace(t *testing.T, kubeconfig, name string) {
	t.Helper()
	kc := kubeClient(kubeconfig, "default")
	resources, err := kc.Build(strings.NewReader("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n"), false)
	require.NoError(t, err)
	_, err = kc.Create(resources, kube.ClientCreateOptionServerSideApply(true, false))
	require.NoError(t, err)
}

// waitServed waits until the API server's discovery serves the resources of groupVersion (a
// CRD is served once established).
func waitServed(t *testing.T, kubeconfig, groupVersion string, resources ...string) {
	t.Helper()
	waitFor(t, groupVersion+" served", time.Minute, func() (bool, error) {
		dc, err := restGetter(kubeconfig, "default").ToDiscoveryClient()
		if err != nil {
			return false, err
		}
		list, err := dc.ServerResourcesForGroupVersion(groupVersion)
		if err != nil {
			return false, err
		}
		served := map[string]bool{}
		for _, r := range list.APIResources {
			served[r.Name] = true
		}
		for _, r := range resources {
			if !served[r] {
				return false, fmt.Errorf("%s not served yet", r)
			}
		}
		return true, nil
	})
}
