"""Where the harness finds the executables it runs."""

from __future__ import annotations

import sys
from pathlib import Path

# The virtualenv's bin: proc_publisher and raptor (installed with raptor), supervisord
# and supervisorctl (installed with the test extra).
BIN = Path(sys.executable).parent
