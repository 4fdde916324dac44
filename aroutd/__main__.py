"""`python -m aroutd` is the `aroutd` command."""

import sys

from aroutd.cli import main

sys.exit(main())
