//go:build tools

// Package tools pins the Kubernetes control-plane commands that hack/cluster builds.
// The build tag keeps it out of every normal build; `go build <pkg>` still resolves
// the packages through this module's go.mod and its staging replace directives.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
