"""Tests of the operator and its chart; the harness they run on lives in ``tools/``."""
