"""``python -m wgflow``: the ``wgflow`` command."""
import sys

from .cli import main

sys.exit(main())
