package chart

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// KubeVersion is the Kubernetes release the chart is rendered for and validated against.
const KubeVersion = "v1.34.3"

// MonitoringAPI is the API group version the ServiceMonitor and PrometheusRule need.
const MonitoringAPI = "monitoring.coreos.com/v1"

// Options says how to render: like `helm template` with --namespace, --kube-version and
// --api-versions.
type Options struct {
	ReleaseName string
	Namespace   string
	Values      map[string]any
	// APIVersions are served by the cluster in addition to the built-in ones, e.g. MonitoringAPI.
	APIVersions []string
}

// Object is one rendered Kubernetes object.
type Object struct {
	// Source is the template that rendered it, e.g. meridian/templates/ingest-statefulset.yaml.
	Source string
	// Hook is true for Helm hooks (rendered, but applied by Helm around the release).
	Hook bool
	// Raw is the object's YAML as rendered; Content the same, decoded.
	Raw     []byte
	Content map[string]any
}

// Kind returns the object's kind.
func (o Object) Kind() string { s, _ := o.Content["kind"].(string); return s }

// APIVersion returns the object's apiVersion.
func (o Object) APIVersion() string { s, _ := o.Content["apiVersion"].(string); return s }

// Name returns metadata.name.
func (o Object) Name() string {
	md, _ := o.Content["metadata"].(map[string]any)
	s, _ := md["name"].(string)
	return s
}

// Namespace returns metadata.namespace.
func (o Object) Namespace() string {
	md, _ := o.Content["metadata"].(map[string]any)
	s, _ := md["namespace"].(string)
	return s
}

// String names the object as kubectl does, with its template.
func (o Object) String() string {
	return fmt.Sprintf("%s/%s (%s)", o.Kind(), o.Name(), o.Source)
}

// Release is a rendered release: its objects, hooks included, and NOTES.txt.
type Release struct {
	Objects []Object
	Notes   string
}

// Find returns the object of that kind and name.
func (r *Release) Find(kind, name string) (Object, bool) {
	for _, o := range r.Objects {
		if o.Kind() == kind && o.Name() == name {
			return o, true
		}
	}
	return Object{}, false
}

// OfKind returns the objects of a kind.
func (r *Release) OfKind(kind string) []Object {
	var out []Object
	for _, o := range r.Objects {
		if o.Kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// Load loads the chart directory.
func Load(dir string) (*chartv2.Chart, error) {
	ch, err := loader.LoadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return ch, nil
}

// Render renders the chart as `helm install --dry-run=client` does, values.schema.json included.
func Render(ch *chartv2.Chart, opts Options) (*Release, error) {
	kv, err := common.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{})
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = opts.ReleaseName
	install.Namespace = opts.Namespace
	install.KubeVersion = kv
	install.APIVersions = opts.APIVersions
	install.Replace = true
	rel, err := install.Run(ch, opts.Values)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("unexpected release type %T", rel)
	}
	out := &Release{}
	if r.Info != nil {
		out.Notes = r.Info.Notes
	}
	objs, err := splitManifest(r.Manifest, false)
	if err != nil {
		return nil, err
	}
	out.Objects = append(out.Objects, objs...)
	for _, h := range r.Hooks {
		objs, err := splitManifest(fmt.Sprintf("---\n# Source: %s\n%s", h.Path, h.Manifest), true)
		if err != nil {
			return nil, err
		}
		out.Objects = append(out.Objects, objs...)
	}
	sort.SliceStable(out.Objects, func(i, j int) bool { return out.Objects[i].String() < out.Objects[j].String() })
	return out, nil
}

// splitManifest cuts a rendered manifest into its YAML documents, keeping each one's source.
func splitManifest(manifest string, hook bool) ([]Object, error) {
	var out []Object
	rd := utilyaml.NewYAMLReader(bufioReader(manifest))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("split manifest: %w", err)
		}
		source := ""
		for _, line := range strings.Split(string(doc), "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
				break
			}
		}
		// Decoded the way the API server decodes JSON: integers as int64, other numbers float64.
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		var content map[string]any
		if err := utiljson.Unmarshal(js, &content); err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if len(content) == 0 {
			continue
		}
		out = append(out, Object{Source: source, Hook: hook, Raw: bytes.TrimSpace(doc), Content: content})
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
