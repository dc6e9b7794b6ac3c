//go:build tools

// Package kubeapiserver pins the Kubernetes release whose API server the chart's tests install
// the chart into (`make kube-apiserver` builds it into bin/kube-apiserver): the API server itself
// decodes, defaults, validates and stores every object the chart renders. It is the release the
// chart is rendered and schema-checked for (deploy/chart KubeVersion). It is a module of its own
// so that Kubernetes's dependency graph stays out of Meridian's and the chart tests' builds.
// k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver, ...) at v0.0.0
// and replaces them with its own directories; a dependent module must replace each one with the
// published v0.34 release of the same tag.
package kubeapiserver

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
