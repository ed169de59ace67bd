"""Generic Kubernetes plumbing: a JSON client, informers, leader election and Events.

Nothing in this package knows what a blueprint is; ``caches``, ``writing``, ``reporting`` and
``controller`` join it to the domain.
"""
