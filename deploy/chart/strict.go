package chart

import (
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// strictCodecs decode into the Go API types and fail on unknown or duplicate fields, as the API
// server's strict field validation does.
var strictCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := monitoringv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return serializer.NewCodecFactory(s, serializer.EnableStrict)
}()

// DecodeStrict decodes a rendered object into its typed Go value (e.g. *appsv1.StatefulSet).
func DecodeStrict(raw []byte) (runtime.Object, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, err
	}
	obj, _, err := strictCodecs.UniversalDeserializer().Decode(js, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("strict decoding: %w", err)
	}
	return obj, nil
}
