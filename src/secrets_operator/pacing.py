"""When to make the first write into a namespace just seen created: at once, unless this operator
has been seen to outrun the API server's own view of new namespaces.

kube-apiserver's NamespaceLifecycle admission looks a create's namespace up in its own informer;
when the namespace is not there yet it sleeps 50 ms (``missingNamespaceWait``, k8s.io/apiserver
pkg/admission/plugin/namespace/lifecycle) and looks again. The operator learns of a namespace
from a watch fed by the same watch cache, so its first create usually arrives after the
informer has the namespace, but not always: on a busy machine shared with the API server,
creates sent the moment the namespace was seen waited the 50 ms for 12 of 500 namespaces at 20
per second and 5 of 120 at 2 per second (docs/performance.md). An operator one network hop away
hardly ever wins that race. A fixed delay before every first write would make everyone pay for
the few who lose it.

So the delay is learned from the one signal the API server gives: a create into a namespace seen
less than ``FRESH_SECONDS`` before that took ``SLOW_SECONDS`` or more. Each such create raises the
delay by ``STEP`` (up to ``CEILING``, a delay measured to remove the wait on that machine); every
other such create lowers it by ``STEP / CLEAN_PER_STEP``. The delay settles where about one
first create in ``CLEAN_PER_STEP`` still meets the wait, and at zero where none do. A slow server
(not a lost race) can raise it too, never above ``CEILING``.

Pure: the controller reports durations and asks for the delay; nothing here does I/O.
"""

from __future__ import annotations

#: A namespace is new for this long after the operator first saw it.
FRESH_SECONDS = 1.0
#: A first create at least this slow met the 50 ms wait (a create here takes a few ms).
SLOW_SECONDS = 0.045
#: Added to the delay by each create that met the wait.
STEP = 0.001
#: The most the delay can grow to: with 5 ms no create met the wait here (0 of 500 and 0 of 120).
CEILING = 0.005
#: Fast first creates that undo one STEP: the share of first creates allowed to meet the wait.
CLEAN_PER_STEP = 500


class NewNamespacePacing:
    """The delay before the first write into a new namespace, learned from first creates."""

    def __init__(
        self,
        *,
        step: float = STEP,
        ceiling: float = CEILING,
        clean_per_step: int = CLEAN_PER_STEP,
        slow: float = SLOW_SECONDS,
    ) -> None:
        self.step, self.ceiling, self.slow = step, ceiling, slow
        self.decay = step / clean_per_step
        self.delay = 0.0
        self.slow_creates = 0  # first creates that met the wait, since start

    def observe(self, seconds: float) -> None:
        """A create into a namespace seen less than FRESH_SECONDS before took ``seconds``."""
        if seconds >= self.slow:
            self.slow_creates += 1
            self.delay = min(self.ceiling, self.delay + self.step)
        else:
            self.delay = max(0.0, self.delay - self.decay)
