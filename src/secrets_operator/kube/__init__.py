"""Generic Kubernetes plumbing: a JSON client, informers, leader election and Events.

Nothing in this package knows what a blueprint is; ``controller.py`` joins it to the domain.
"""
