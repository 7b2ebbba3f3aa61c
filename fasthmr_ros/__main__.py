"""``python -m fasthmr_ros``: the ``fasthmr`` command line."""

import sys

from fasthmr_ros.cli.main import main

sys.exit(main())
