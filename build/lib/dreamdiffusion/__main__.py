"""``python -m dreamdiffusion`` is the ``dreamdiffusion`` command."""

import sys

from dreamdiffusion.cli import main

sys.exit(main())
