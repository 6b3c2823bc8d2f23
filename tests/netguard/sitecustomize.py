"""Installs the test network guard in a subprocess started by a test (see guard.py)."""

import os
import sys
from pathlib import Path

if os.environ.get("RECONCILER_TEST_NETGUARD") == "1":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import guard  # type: ignore[import-not-found]

    guard.install()
    sys.path.pop(0)
