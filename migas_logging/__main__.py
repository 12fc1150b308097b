"""``python -m migas_logging`` runs the ``migas-logging`` command."""

import sys

from migas_logging.cli import main

sys.exit(main())
