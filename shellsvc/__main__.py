"""``python -m shellsvc`` is the ``shellsvc`` command."""

import sys

from .cli import main

sys.exit(main())
