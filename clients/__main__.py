"""``python -m clients``: the same as ``shellsvc-client``."""

import sys

from .cli import main

sys.exit(main())
