"""`python -m aroutd` is the `aroutd` command."""

import sys

from .cli import main

sys.exit(main())
