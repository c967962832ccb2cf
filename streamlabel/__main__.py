"""``python -m streamlabel ...`` is the ``streamlabel`` command."""

import sys

from streamlabel.launch.cli import main

sys.exit(main())
