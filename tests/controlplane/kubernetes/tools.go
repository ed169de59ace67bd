//go:build tools

// Package controlplane pins the upstream Kubernetes commands that the test
// control plane is built from. It is never compiled into anything itself.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
