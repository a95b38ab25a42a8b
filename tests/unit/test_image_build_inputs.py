"""hack/build-images rebuilds an image only when its key changes, so the key must cover every
file a Dockerfile copies: these read the COPY lines the way the builder does."""

from __future__ import annotations

import pytest

from containerimages import REPO_ROOT, context_files, copy_sources, images

PACKAGE_SOURCES = ["pyproject.toml", "README.md", "operator/arqfleet", "worker/arqfleet"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("operator", PACKAGE_SOURCES),
        ("worker", PACKAGE_SOURCES),
        ("example", ["examples/app/"]),
        ("bench", ["bench/timed_app.py"]),
    ],
)
def test_the_key_covers_what_each_dockerfile_copies(name: str, expected: list[str]) -> None:
    assert copy_sources(images()[name].dockerfile.read_text()) == expected


@pytest.mark.parametrize(
    ("dockerfile", "expected"),
    [
        pytest.param("COPY a b /dst/\n", ["a", "b"], id="several-sources"),
        pytest.param("COPY --chown=1:1 a /dst\n", ["a"], id="options-skipped"),
        pytest.param("COPY --from=builder /venv /venv\n", [], id="from-a-stage"),
        pytest.param('COPY ["a b", "/dst/"]\n', ["a b"], id="exec-form"),
        pytest.param("copy \\\n  # note\n  a \\\n  /dst\n", ["a"], id="continued-with-comment"),
        pytest.param("ADD x.tar /\nRUN echo 'COPY y /'\n", ["x.tar"], id="add-not-run"),
    ],
)
def test_copy_sources_reads_instructions_like_the_builder(
    dockerfile: str, expected: list[str]
) -> None:
    assert copy_sources(dockerfile) == expected


def test_context_files_leave_out_bytecode() -> None:
    files = context_files(["worker/arqfleet"])
    assert REPO_ROOT / "worker/arqfleet/worker/__main__.py" in files
    assert all(path.suffix != ".pyc" and "__pycache__" not in path.parts for path in files)
