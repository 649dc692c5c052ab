"""``python -m swarm.dashboard``: see server.py."""

import sys

from swarm.dashboard.server import main

sys.exit(main())
