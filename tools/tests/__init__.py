"""Tests of the tooling itself (version pins, the benchmark's verdicts, the generated docs): no cluster."""
