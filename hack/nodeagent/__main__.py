"""`python hack/nodeagent ...`: the same command as `python hack/nodeagent.py ...`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodeagent.agent import main

sys.exit(main())
