"""Tests, and the harness they run on: a real control plane built from source (cluster.py)."""
