"""prometheus and promtool, as hack/setup extracts them from Debian's prometheus package.

They live in ${ARQFLEET_CACHE:-~/.cache/arqfleet}/prometheus-<Debian version>/ (the same cache
root as hack/build-control-plane and hack/install-helm); the newest version there wins.
Nothing here installs or starts anything.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

BINARIES = ("prometheus", "promtool")


def cache_root() -> Path:
    return Path(os.environ.get("ARQFLEET_CACHE", Path.home() / ".cache" / "arqfleet"))


def _version_key(directory: Path) -> list[int | str]:
    """Natural order of the Debian version in the name (2.42.0+ds-5+deb12u10 > ...u9).

    re.split with a capturing group alternates text and digits, so lists always compare
    str with str and int with int.
    """
    version = directory.name.removeprefix("prometheus-")
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", version))]


def prometheus_bin_dir() -> Path:
    """The newest cached prometheus-<version>/ directory holding both binaries."""
    root = cache_root()
    complete = [
        d
        for d in root.glob("prometheus-*")
        if d.is_dir()
        and not d.name.endswith(".partial")
        and all(os.access(d / name, os.X_OK) for name in BINARIES)
    ]
    if not complete:
        raise FileNotFoundError(
            f"no prometheus/promtool under {root}/prometheus-<version>/: "
            "run hack/setup (it extracts them from Debian's prometheus package)"
        )
    return max(complete, key=_version_key)


def promtool_binary() -> Path:
    return prometheus_bin_dir() / "promtool"


def prometheus_binary() -> Path:
    return prometheus_bin_dir() / "prometheus"
