"""The project's tooling, kept apart from the tests that use it.

A real control plane and a real node built from Go modules (``binaries``, ``cluster``, ``node``,
the wrapper modules under ``controlplane/``), the operator run as a process (``operator_process``),
waiting with a deadline (``waiting``), the benchmark (``bench``), the demo (``demo``) and the
configuration reference generator (``reference``). Each is run as ``python -m tools.<name>``;
nothing here is shipped in the package or the image. Tests of the tools live in ``tools/tests``.
"""
