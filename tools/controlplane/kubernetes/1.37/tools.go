//go:build tools

// Package controlplane pins the upstream Kubernetes commands that the test
// control plane and the end-to-end node (kubelet, kube-proxy, kube-scheduler)
// are built from. It is never compiled into anything itself.
package controlplane

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
