//go:build tools

// Package etcd pins the upstream etcd server that backs the test control
// plane. It is never compiled into anything itself.
package etcd

import _ "go.etcd.io/etcd/server/v3"
