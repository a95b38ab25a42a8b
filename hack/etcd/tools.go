//go:build tools

// Package tools pins etcd's server command, built by hack/cluster. A wrapper module
// is needed because go.etcd.io/etcd/server/v3 has replace directives of its own,
// which Go ignores in a dependency (all sibling modules are published at one tag).
package tools

import _ "go.etcd.io/etcd/server/v3"
