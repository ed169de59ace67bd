"""``python -m secrets_operator`` runs the same command line as ``secrets-operator``."""

import sys

from secrets_operator.cli import main

sys.exit(main())
