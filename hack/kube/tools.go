//go:build tools

// Package tools pins the Kubernetes commands that hack/build-control-plane (kube-apiserver,
// kube-controller-manager) and hack/build-node (kubelet, kube-scheduler) build.
// The build tag keeps it out of every normal build; `go build <pkg>` still resolves
// the packages through this module's go.mod and its staging replace directives.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
