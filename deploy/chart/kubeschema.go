package chart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// OpenAPI validates objects of the built-in kinds against the OpenAPI v3 schemas that a
// Kubernetes release publishes (api/openapi-spec/v3 of k8s.io/kubernetes).
//
// Two things are added to the published schemas (and the int-or-string format, which the
// schemas also state as oneOf [integer, string], is left to the oneOf), both of which the API server itself enforces by
// other means: references are expanded (the validator, the one the API server runs for CRDs,
// takes self-contained schemas), and an object schema with properties admits no other property,
// which is what the API server's strict field validation (kubectl's default) does with fields
// that the release does not know.
type OpenAPI struct {
	defs     map[string]*spec.Schema
	byGVK    map[string]string // "apps/v1, Kind=StatefulSet" -> definition name
	expanded map[string]*spec.Schema
}

// LoadOpenAPI reads every *_openapi.json document of an api/openapi-spec/v3 directory.
func LoadOpenAPI(dir string) (*OpenAPI, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*_openapi.json"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no OpenAPI v3 documents in %s", dir)
	}
	o := &OpenAPI{defs: map[string]*spec.Schema{}, byGVK: map[string]string{}, expanded: map[string]*spec.Schema{}}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var doc spec3.OpenAPI
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if doc.Components == nil {
			continue
		}
		for name, s := range doc.Components.Schemas {
			o.defs[name] = s
			gvks, _ := s.Extensions["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				m, _ := g.(map[string]any)
				group, _ := m["group"].(string)
				version, _ := m["version"].(string)
				kind, _ := m["kind"].(string)
				gv := version
				if group != "" {
					gv = group + "/" + version
				}
				// The meta/v1 kinds (Status, WatchEvent, DeleteOptions) are listed under every
				// group; keep a kind's own definition.
				if _, seen := o.byGVK[gv+", Kind="+kind]; !seen || !strings.Contains(name, ".apimachinery.") {
					o.byGVK[gv+", Kind="+kind] = name
				}
			}
		}
	}
	return o, nil
}

// Schema returns the expanded schema of a definition, e.g. io.k8s.api.core.v1.Container.
func (o *OpenAPI) Schema(name string) (*spec.Schema, error) {
	if _, ok := o.defs[name]; !ok {
		return nil, fmt.Errorf("no OpenAPI definition %s", name)
	}
	return o.expand(name, map[string]bool{}), nil
}

// Validate checks an object (JSON-decoded) against the schema of its apiVersion and kind.
func (o *OpenAPI) Validate(obj map[string]any) error {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	name, ok := o.byGVK[apiVersion+", Kind="+kind]
	if !ok {
		return fmt.Errorf("%s %s is not served by Kubernetes %s", apiVersion, kind, KubeVersion)
	}
	s, err := o.Schema(name)
	if err != nil {
		return err
	}
	return validateAgainst(s, obj)
}

func validateAgainst(s *spec.Schema, obj any) error {
	errs := validation.ValidateCustomResource(field.NewPath(""), obj, validation.NewSchemaValidatorFromOpenAPI(s))
	if len(errs) > 0 {
		return errs.ToAggregate()
	}
	return nil
}

// expand returns a copy of the named definition with every reference replaced by its target.
// A definition that refers to itself (none of the workload kinds do) stops at the second visit.
func (o *OpenAPI) expand(name string, visiting map[string]bool) *spec.Schema {
	if s, ok := o.expanded[name]; ok {
		return s
	}
	if visiting[name] {
		return &spec.Schema{}
	}
	visiting[name] = true
	s := o.expandSchema(o.defs[name], visiting)
	delete(visiting, name)
	o.expanded[name] = s
	return s
}

func refName(r spec.Ref) string {
	return strings.TrimPrefix(r.String(), "#/components/schemas/")
}

func (o *OpenAPI) expandSchema(in *spec.Schema, visiting map[string]bool) *spec.Schema {
	if in == nil {
		return nil
	}
	if r := refName(in.Ref); r != "" {
		return o.expand(r, visiting)
	}
	// A property that is a reference with its own description or default is written
	// allOf: [{$ref}]; it is the referenced schema.
	if len(in.AllOf) == 1 && refName(in.AllOf[0].Ref) != "" && len(in.Type) == 0 && len(in.Properties) == 0 {
		return o.expand(refName(in.AllOf[0].Ref), visiting)
	}
	out := *in
	out.Extensions = nil
	out.Description = ""
	// IntOrString is written format: int-or-string with oneOf [integer, string]; the oneOf says
	// it, and the validator's format check of that name accepts strings only.
	if out.Format == "int-or-string" {
		out.Format = ""
	}
	if in.Properties != nil {
		out.Properties = make(map[string]spec.Schema, len(in.Properties))
		for k, p := range in.Properties {
			out.Properties[k] = *o.expandSchema(&p, visiting)
		}
		if in.AdditionalProperties == nil && !preservesUnknown(in) {
			out.AdditionalProperties = &spec.SchemaOrBool{Allows: false}
		}
	}
	if in.AdditionalProperties != nil && in.AdditionalProperties.Schema != nil {
		out.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: o.expandSchema(in.AdditionalProperties.Schema, visiting)}
	}
	if in.Items != nil {
		items := *in.Items
		if in.Items.Schema != nil {
			items.Schema = o.expandSchema(in.Items.Schema, visiting)
		}
		if len(in.Items.Schemas) > 0 {
			items.Schemas = nil
			for i := range in.Items.Schemas {
				items.Schemas = append(items.Schemas, *o.expandSchema(&in.Items.Schemas[i], visiting))
			}
		}
		out.Items = &items
	}
	out.AllOf = o.expandAll(in.AllOf, visiting)
	out.AnyOf = o.expandAll(in.AnyOf, visiting)
	out.OneOf = o.expandAll(in.OneOf, visiting)
	return &out
}

func (o *OpenAPI) expandAll(in []spec.Schema, visiting map[string]bool) []spec.Schema {
	if in == nil {
		return nil
	}
	out := make([]spec.Schema, len(in))
	for i := range in {
		out[i] = *o.expandSchema(&in[i], visiting)
	}
	return out
}

func preservesUnknown(s *spec.Schema) bool {
	v, _ := s.Extensions["x-kubernetes-preserve-unknown-fields"].(bool)
	return v
}
