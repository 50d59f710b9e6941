"""``python -m ghsim``: the same as ``runnerd-dev github-sim``."""

import sys

from .cli import main

sys.exit(main())
