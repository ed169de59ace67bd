"""Benchmarks of the operator against a private local control plane: ``python -m tools.bench``.

They exist to put numbers behind the claims in docs/performance.md (propagation latency,
fan-out against a raw-client baseline, restart cost, idle traffic, memory, failover). They
measure and report; they assert nothing about time, so a slow machine never makes them fail.
"""
