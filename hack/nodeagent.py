#!/usr/bin/env python3
"""hack/nodeagent.py: the local node agent, kubelet (and scheduler) for one fake node.

    python hack/nodeagent.py --kubeconfig K --node-name N [--namespace NS ...]
                             [--logs-dir D] [--restart-backoff-seconds 10]

The code is the package hack/nodeagent/ (its docstring says what the agent does and does not
do); this file is the command. Run from hack/, `import nodeagent` finds the package, which
Python prefers over this same-named module.
"""

from __future__ import annotations

import sys

from nodeagent.agent import main

if __name__ == "__main__":
    sys.exit(main())
