"""``python -m earmark``: the same as the ``earmark`` command."""

import sys

from earmark.console import main

sys.exit(main())
