"""The node's sandbox image is made from its binaries alone, byte for byte the same each time,
so its name (which carries the manifest digest) changes only when a binary does."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import nodeimage


def binaries(directory: Path, pause: bytes = b"pause") -> Path:
    directory.mkdir()
    (directory / "pause").write_bytes(pause)
    (directory / "netcheck").write_bytes(b"netcheck")
    return directory


def test_the_archive_is_reproducible_and_named_by_its_digest(tmp_path: Path) -> None:
    first = binaries(tmp_path / "a")
    second = binaries(tmp_path / "b")
    reference = nodeimage.build(first)
    assert nodeimage.build(second) == reference
    archive = nodeimage.ARCHIVE
    assert (first / archive).read_bytes() == (second / archive).read_bytes()
    assert nodeimage.reference(first) == reference
    assert reference.startswith(f"{nodeimage.REPOSITORY}:")
    other = binaries(tmp_path / "c", pause=b"another pause")
    assert nodeimage.build(other) != reference


def test_the_image_runs_pause_as_a_non_root_user(tmp_path: Path) -> None:
    directory = binaries(tmp_path / "bin")
    nodeimage.build(directory)
    with tarfile.open(directory / nodeimage.ARCHIVE) as tar:

        def blob(digest: str) -> dict[str, object]:
            member = tar.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
            assert member is not None
            loaded: dict[str, object] = json.load(member)
            return loaded

        index = tar.extractfile("index.json")
        assert index is not None
        [descriptor] = json.load(index)["manifests"]
        manifest = blob(descriptor["digest"])
        config = blob(manifest["config"]["digest"])  # type: ignore[index]
    assert config["config"] == {"Entrypoint": ["/pause"], "User": "65532:65532", "WorkingDir": "/"}
    assert descriptor["platform"]["os"] == "linux"
