package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// CRDs validates custom resources the way the API server does for a CustomResourceDefinition:
// the version's OpenAPI schema with apiextensions' validator, unknown fields found by its pruning
// (which strict field validation reports as errors), and metadata against ObjectMeta.
type CRDs struct {
	kinds   map[string]crdVersion // "monitoring.coreos.com/v1, Kind=ServiceMonitor"
	builtin *OpenAPI
}

type crdVersion struct {
	validator  validation.SchemaValidator
	structural *structuralschema.Structural
}

// LoadCRDs reads the CustomResourceDefinitions in the files; builtin supplies ObjectMeta.
func LoadCRDs(builtin *OpenAPI, files ...string) (*CRDs, error) {
	c := &CRDs{kinds: map[string]crdVersion{}, builtin: builtin}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(b, &crd); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served || v.Schema == nil || v.Schema.OpenAPIV3Schema == nil {
				continue
			}
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
			}
			validator, _, err := validation.NewSchemaValidator(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
			}
			structural, err := structuralschema.NewStructural(&internal)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", crd.Name, v.Name, err)
			}
			c.kinds[crd.Spec.Group+"/"+v.Name+", Kind="+crd.Spec.Names.Kind] = crdVersion{validator: validator, structural: structural}
		}
	}
	return c, nil
}

// Has says whether the kind is one of the loaded CRDs.
func (c *CRDs) Has(apiVersion, kind string) bool {
	_, ok := c.kinds[apiVersion+", Kind="+kind]
	return ok
}

// Validate checks a custom resource (JSON-decoded).
func (c *CRDs) Validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	v, ok := c.kinds[apiVersion+", Kind="+kind]
	if !ok {
		return fmt.Errorf("no CRD for %s %s", apiVersion, kind)
	}
	var problems []string
	if errs := validation.ValidateCustomResource(field.NewPath(""), obj, v.validator); len(errs) > 0 {
		problems = append(problems, errs.ToAggregate().Error())
	}
	// Pruning works on a copy: it removes what it reports.
	cp := deepCopyJSON(obj)
	if unknown := pruning.PruneWithOptions(cp, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true}); len(unknown) > 0 {
		problems = append(problems, "unknown fields: "+strings.Join(unknown, ", "))
	}
	if md, ok := obj["metadata"]; ok {
		meta, err := c.builtin.Schema("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
		if err != nil {
			return err
		}
		if err := validateAgainst(meta, md); err != nil {
			problems = append(problems, "metadata: "+err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

func deepCopyJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = deepCopyJSON(x)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, x := range t {
			s[i] = deepCopyJSON(x)
		}
		return s
	default:
		return v
	}
}
