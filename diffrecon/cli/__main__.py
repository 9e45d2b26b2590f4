"""``python -m diffrecon.cli ...``: the same as the ``diffrecon`` command."""
import sys

from . import main

sys.exit(main())
