"""Integration tests against the real control plane: the operator run as subprocesses, as deployed."""
