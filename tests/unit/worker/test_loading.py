"""Loading the user's settings: found, not found (exit 2), raising on import (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arqfleet.worker.loading import SettingsImportFailed, SettingsNotFound, load_settings


def test_loads_the_example_settings_class() -> None:
    settings = load_settings("examples.app.worker.WorkerSettings")
    assert isinstance(settings, type)
    assert settings.__name__ == "WorkerSettings"


def test_loads_a_settings_dict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dict_settings_mod.py").write_text("settings = {'max_jobs': 2}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_settings("dict_settings_mod.settings") == {"max_jobs": 2}


@pytest.mark.parametrize(
    "path",
    ["nowhere_pkg.worker.WorkerSettings", "examples.app.worker.Missing", "WorkerSettings"],
    ids=["no-module", "no-attribute", "not-a-path"],
)
def test_unresolvable_paths(path: str) -> None:
    with pytest.raises(SettingsNotFound, match=r"WorkerSettings|Missing"):
        load_settings(path)


def test_module_whose_import_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "raising_settings_mod.py").write_text("raise RuntimeError('bad config')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SettingsImportFailed) as caught:
        load_settings("raising_settings_mod.WorkerSettings")
    assert "RuntimeError: bad config" in caught.value.details


def test_missing_dependency_inside_the_module_is_an_import_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_dep_mod.py").write_text("import not_installed_dep_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SettingsImportFailed):
        load_settings("needs_dep_mod.WorkerSettings")
