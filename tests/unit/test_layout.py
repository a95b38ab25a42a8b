"""The source-root layout must never shadow the standard library's `operator` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_operator_from_repo_root_is_the_standard_library() -> None:
    # A fresh interpreter with the repo root first on sys.path, as `python -m pytest` has.
    code = (
        "import sys; sys.path.insert(0, '.'); import operator, collections; "
        "print(operator.__file__); print(hasattr(operator, 'eq'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "site-packages" not in out[0]
    assert not out[0].startswith(str(REPO_ROOT / "operator"))
    assert out[1] == "True"


def test_arqfleet_is_a_namespace_package_with_both_halves() -> None:
    import arqfleet
    import arqfleet.operator
    import arqfleet.worker

    assert getattr(arqfleet, "__file__", None) is None
    assert {Path(p).parent.name for p in arqfleet.__path__} == {"operator", "worker"}
