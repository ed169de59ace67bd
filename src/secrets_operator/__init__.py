"""secrets-operator: copies blueprint Secrets and ConfigMaps into selected namespaces, keeps copies in sync.

The package's public surface is the ``secrets-operator`` command (``secrets_operator.cli``);
everything else is internal and may change between releases. The version is the installed
distribution's, which the build derives from the git tag (see tools/release/versions.py).
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _installed_version

try:
    __version__ = _installed_version("secrets-operator")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
