"""secrets-operator: copies blueprint Secrets into selected namespaces and keeps every copy in sync.

The package's public surface is the ``secrets-operator`` command (``secrets_operator.cli``);
everything else is internal and may change between releases.
"""

__version__ = "0.1.0"
