//go:build tools

// Package crds pins controller-gen and prometheus-operator's API types, from which the chart
// tests generate the real ServiceMonitor CRD (the way prometheus-operator generates its own).
// It is never compiled into anything itself.
package crds

import (
	_ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
