"""``python -m hwr_utils`` runs the ``hwr`` command line."""

import sys

from .cli import main

sys.exit(main())
