"""Import the user's ARQ WorkerSettings (a class or a dict) from an import path.

Decides one thing: whether a failure means "the path does not resolve" (the operator or user
typed a wrong name: `SettingsNotFound`, exit 2) or "the user's module raised while importing"
(a bug in their code: `SettingsImportFailed`, exit 1, with the traceback). It must not change
the settings it returns: the runtime applies overrides on a copy.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from typing import Any


class SettingsNotFound(LookupError):
    """The import path names no module or no attribute."""


class SettingsImportFailed(RuntimeError):
    """Importing the user's module raised; `details` holds the formatted traceback."""

    def __init__(self, path: str, details: str) -> None:
        super().__init__(f"importing {path!r} raised an exception")
        self.details = details


def _split(path: str) -> tuple[str, str]:
    module_name, sep, attribute = path.replace(":", ".").rpartition(".")
    if not sep or not module_name or not attribute:
        raise SettingsNotFound(f"{path!r} is not an import path like 'app.worker.WorkerSettings'")
    return module_name, attribute


def _is_missing_target(exc: ModuleNotFoundError, module_name: str) -> bool:
    """True if the module that is missing is the target or one of its parent packages.

    A ModuleNotFoundError for any other name was raised by an import inside the user's module:
    that is a broken module, not a wrong path.
    """
    missing = exc.name or ""
    return missing == module_name or module_name.startswith(missing + ".")


def load_settings(path: str) -> type | dict[str, Any]:
    """Import `path` (``package.module.Name``) and return the settings class or dict."""
    module_name, attribute = _split(path)
    # Like `arq`'s own CLI: a worker started from the app's directory finds the app.
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing_target(exc, module_name):
            raise SettingsNotFound(
                f"cannot import {path!r}: no module named {exc.name!r}"
            ) from None
        raise SettingsImportFailed(path, traceback.format_exc()) from exc
    except Exception as exc:
        raise SettingsImportFailed(path, traceback.format_exc()) from exc
    try:
        settings = getattr(module, attribute)
    except AttributeError:
        raise SettingsNotFound(
            f"cannot import {path!r}: module {module_name!r} has no attribute {attribute!r}"
        ) from None
    if not isinstance(settings, type | dict):
        kind = type(settings).__name__
        raise SettingsNotFound(f"{path!r} is a {kind}, not a settings class or dict")
    return settings
