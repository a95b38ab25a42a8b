//go:build tools

// Package tools pins the container runtime of the local node (hack/localnode.py), built by
// hack/build-node: containerd 2.x, its runc shim and ctr (the shim is started by containerd
// from PATH, so it sits beside it). runc itself is Debian's.
package tools

import (
	_ "github.com/containerd/containerd/v2/cmd/containerd"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2"
	_ "github.com/containerd/containerd/v2/cmd/ctr"
)
