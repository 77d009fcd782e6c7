"""``python -m pgcheck path/to/file.py:function``."""

import sys

from pgcheck.cli import main

sys.exit(main())
