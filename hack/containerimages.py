"""Build arqfleet's container images with podman, without a registry, cached by content.

`hack/build-images` runs this. It makes (or finds) four images from the repository's
Dockerfiles:

    localhost/arqfleet-operator:dev   Dockerfile.operator
    localhost/arqfleet-worker:dev     Dockerfile.worker
    localhost/arqfleet-example:dev    examples/Dockerfile (the example app on the worker image)
    localhost/arqfleet-bench:dev      bench/Dockerfile (the benchmarks' timed app, likewise)

on a Python base given with --python-image, or by default on `localhost/arqfleet-python:bookworm`,
which it makes offline from Debian packages (mmdebstrap, then `podman import`); the tarball is
cached under ~/.cache/arqfleet/images/ like the control-plane binaries.

Caching: every image carries the label `io.arqfleet.build-key`, a hash of what decides its
content: the Dockerfile, the files its COPY lines name (of pyproject.toml only the tables that
reach the image; README.md not at all), its build arguments and the ID of the image it starts
from. A run whose key matches the existing image builds nothing (well under a second for all
four); one that does not logs which inputs changed and lets podman rebuild with its own layer
cache (the dependencies' layer depends on pyproject.toml alone, so a source edit reinstalls
only the package: about 20 s for the three).

Every podman call here and in the tests goes through `podman()`, which points CONTAINERS_CONF
at hack/containers.conf (runc, cgroupfs, capped ulimits): the machine's /etc/containers stays
as it is. Builds get the host's CA bundle as a read-only build-time volume (package downloads
pass a TLS-intercepting proxy that only the host trusts); it is never copied into an image.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO_ROOT / "hack" / "containers.conf"
CACHE_ROOT = Path(os.environ.get("ARQFLEET_CACHE", Path.home() / ".cache" / "arqfleet"))
IMAGES_CACHE = CACHE_ROOT / "images"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
KEY_LABEL = "io.arqfleet.build-key"
# Part of every key: bump it when the way images are built here changes (flags, labels).
RECIPE_VERSION = "1"
# Build inputs that are never part of an image (.dockerignore keeps them out of the context).
IGNORED_PARTS = frozenset({"__pycache__"})
IGNORED_SUFFIXES = frozenset({".pyc"})


def log(message: str) -> None:
    print(f"build-images: {message}", file=sys.stderr, flush=True)


def podman_env() -> dict[str, str]:
    """The environment of every podman call: the project's engine settings."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


class PodmanFailed(subprocess.CalledProcessError):
    """A podman command failed; its message includes what podman said on stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.stderr}"


def podman(
    *args: str, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS` with the project's containers.conf, output captured as text."""
    result = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise PodmanFailed(result.returncode, result.args, result.stdout, result.stderr)
    return result


def inspect_image(reference: str) -> dict[str, object] | None:
    """`podman image inspect` of a local image, or None if there is none by that name."""
    result = podman("image", "inspect", reference, check=False)
    if result.returncode != 0:
        return None
    found: list[dict[str, object]] = json.loads(result.stdout)
    return found[0] if found else None


def image_id(reference: str) -> str | None:
    info = inspect_image(reference)
    return str(info["Id"]) if info else None


def build_key_of(reference: str) -> str | None:
    info = inspect_image(reference)
    labels = (info or {}).get("Labels") or {}
    assert isinstance(labels, dict)
    key = labels.get(KEY_LABEL)
    return str(key) if key else None


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """One build at a time per machine: `make images` beside a test session waits its turn."""
    IMAGES_CACHE.mkdir(parents=True, exist_ok=True)
    with (IMAGES_CACHE / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# -- the offline Python base ---------------------------------------------------------------


@dataclass(frozen=True)
class BaseRecipe:
    """A Debian minbase with Debian's Python, made from the package mirror (no registry)."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    packages: tuple[str, ...] = ("python3", "python3-venv", "ca-certificates")
    # Documentation, man pages and translations are a sixth of the tarball and unused here;
    # the copyright files stay, as in Debian's own slim images.
    dpkg_options: tuple[str, ...] = (
        "path-exclude=/usr/share/doc/*",
        "path-include=/usr/share/doc/*/copyright",
        "path-exclude=/usr/share/man/*",
        "path-exclude=/usr/share/locale/*",
    )
    # podman import keeps no environment: these are what Debian's and Python's images set.
    env: tuple[str, ...] = (
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
    )

    @property
    def tag(self) -> str:
        return f"localhost/arqfleet-python:{self.suite}"

    @property
    def key(self) -> str:
        return digest(RECIPE_VERSION, asdict(self))

    @property
    def tarball(self) -> Path:
        return IMAGES_CACHE / f"debian-python-{self.suite}-{self.key}.tar"


def ensure_base(recipe: BaseRecipe) -> str:
    """Make the base image if its key changed or it is missing; returns its tag."""
    if build_key_of(recipe.tag) == recipe.key:
        return recipe.tag
    if not recipe.tarball.exists():
        partial = recipe.tarball.with_suffix(".partial.tar")
        partial.unlink(missing_ok=True)
        log(f"making the Python base with mmdebstrap ({recipe.suite}, about a minute)")
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                *(f"--dpkgopt={option}" for option in recipe.dpkg_options),
                recipe.suite,
                str(partial),
                recipe.mirror,
            ],
            check=True,
            stdout=sys.stderr,
        )
        partial.rename(recipe.tarball)
    changes = [f"ENV {variable}" for variable in recipe.env]
    changes += [f"LABEL {KEY_LABEL}={recipe.key}", 'CMD ["python3"]']
    previous = image_id(recipe.tag)
    podman(
        "import",
        *(f"--change={change}" for change in changes),
        str(recipe.tarball),
        recipe.tag,
    )
    drop_if_replaced(previous, recipe.tag)
    return recipe.tag


def drop_if_replaced(previous: str | None, tag: str) -> None:
    """Remove the image `tag` named before a rebuild, so rebuilds do not pile up.

    Its layers stay while the build cache uses them, and an image a container still runs
    stays too (podman refuses; that is fine)."""
    if previous and previous != image_id(tag):
        podman("rmi", previous, check=False)


# -- the images from the Dockerfiles -------------------------------------------------------


@dataclass(frozen=True)
class Image:
    name: str
    dockerfile: Path
    tag: str


def images(tag: str = "dev") -> dict[str, Image]:
    return {
        name: Image(name, REPO_ROOT / dockerfile, f"localhost/arqfleet-{name}:{tag}")
        for name, dockerfile in (
            ("operator", "Dockerfile.operator"),
            ("worker", "Dockerfile.worker"),
            ("example", "examples/Dockerfile"),
            ("bench", "bench/Dockerfile"),
        )
    }


def instructions(dockerfile: str) -> Iterator[str]:
    """The Dockerfile's instructions, one string each, continuation lines joined."""
    pending = ""
    for raw in dockerfile.splitlines():
        line = raw.strip()
        # Docker drops comment and empty lines even inside a continued instruction.
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""


def copy_sources(dockerfile: str) -> list[str]:
    """The build-context paths the Dockerfile's COPY/ADD lines read (not those --from= a stage)."""
    sources: list[str] = []
    for instruction in instructions(dockerfile):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() not in ("COPY", "ADD"):
            continue
        options = []
        rest = rest.strip()
        while rest.startswith("--"):
            option, _, rest = rest.partition(" ")
            options.append(option)
            rest = rest.strip()
        if any(option.startswith("--from=") for option in options):
            continue
        # JSON form (COPY ["src", "dest"]) or words split like a shell would split them.
        paths: list[str] = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        sources += paths[:-1]
    return sources


def context_files(sources: Sequence[str]) -> list[Path]:
    files: set[Path] = set()
    for source in sources:
        for match in sorted(REPO_ROOT.glob(source.rstrip("/"))):
            candidates = [match] if match.is_file() else match.rglob("*")
            files.update(
                path
                for path in candidates
                if path.is_file()
                and not IGNORED_PARTS.intersection(path.relative_to(REPO_ROOT).parts)
                and path.suffix not in IGNORED_SUFFIXES
            )
    return sorted(files)


def input_digest(path: Path) -> str:
    """The hash of one file the build copies, counting only what can change the image."""
    if path == REPO_ROOT / "README.md":
        # Copied only as the package's long description, which nothing in an image reads;
        # documentation edits need no new images.
        return "-"
    if path == REPO_ROOT / "pyproject.toml":
        # Only these tables reach the image (dependencies, entry points, the wheel's files);
        # the lint and test settings beside them change often and build nothing.
        with path.open("rb") as handle:
            project = tomllib.load(handle)
        return digest(
            project.get("build-system"),
            project.get("project"),
            project.get("tool", {}).get("hatch"),
        )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def image_inputs(image: Image, build_args: Mapping[str, str]) -> dict[str, str]:
    """What decides the image, by name: its Dockerfile, the files it copies, its build args."""
    text = image.dockerfile.read_text()
    inputs = {str(image.dockerfile.relative_to(REPO_ROOT)): digest(text)}
    for path in context_files(copy_sources(text)):
        inputs[str(path.relative_to(REPO_ROOT))] = input_digest(path)
    for name, value in build_args.items():
        # An image argument counts by its ID: a rebuilt base or worker rebuilds what uses it.
        inputs[f"--build-arg {name}"] = (
            (image_id(value) or value) if name.endswith("_IMAGE") else value
        )
    return inputs


def inputs_record(image: Image) -> Path:
    return IMAGES_CACHE / f"{image.tag.rsplit('/', 1)[-1].replace(':', '_')}.inputs.json"


def explain_rebuild(image: Image, inputs: Mapping[str, str]) -> None:
    """Log which inputs changed since the last build of this tag."""
    try:
        before: dict[str, str] = json.loads(inputs_record(image).read_text())
    except (OSError, ValueError):
        return  # never built here, or built by something else: nothing to compare with
    changed = sorted(k for k in inputs.keys() | before.keys() if inputs.get(k) != before.get(k))
    if changed:
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        log(f"{image.tag}: rebuilding, changed: {', '.join(changed[:5])}{more}")


def ensure_image(image: Image, build_args: Mapping[str, str], *, force: bool) -> bool:
    """Build `image` unless its key matches the existing one; True if it was built."""
    inputs = image_inputs(image, build_args)
    key = digest(RECIPE_VERSION, inputs)
    if not force and build_key_of(image.tag) == key:
        return False
    explain_rebuild(image, inputs)
    previous = image_id(image.tag)
    # The host's network for RUN steps (pip reaches the package index): podman's default
    # bridge would leave its CNI state behind (/var/lib/cni, the cni-podman0 link, iptables
    # chains, ip_forward turned on) on a machine that had none.
    command = ["build", "--network=host", "--file", str(image.dockerfile), "--tag", image.tag]
    command += [f"--label={KEY_LABEL}={key}"]
    command += [f"--build-arg={name}={value}" for name, value in build_args.items()]
    if CA_BUNDLE.exists():
        command += [f"--volume={CA_BUNDLE}:{CA_BUNDLE}:ro"]
    # The build's progress goes to stderr: stdout is for the summary (tags and sizes).
    subprocess.run(
        ["podman", *command, str(REPO_ROOT)], env=podman_env(), check=True, stdout=sys.stderr
    )
    drop_if_replaced(previous, image.tag)
    inputs_record(image).write_text(json.dumps(inputs, indent=1, sort_keys=True))
    return True


def project_version() -> str:
    with (REPO_ROOT / "pyproject.toml").open("rb") as handle:
        version: str = tomllib.load(handle)["project"]["version"]
    return version


def build_all(python_image: str | None, tag: str, *, force: bool) -> dict[str, Image]:
    """Ensure the base (unless one is given) and the images; logs what each took."""
    started = time.monotonic()
    with build_lock():
        step = time.monotonic()
        base = python_image or ensure_base(BaseRecipe())
        log(f"base {base}: ready in {time.monotonic() - step:.1f} s")
        found = images(tag)
        version = project_version()
        plans = [
            (found["operator"], {"PYTHON_IMAGE": base, "VERSION": version}),
            (found["worker"], {"PYTHON_IMAGE": base, "VERSION": version}),
            (found["example"], {"WORKER_IMAGE": found["worker"].tag}),
            (found["bench"], {"WORKER_IMAGE": found["worker"].tag}),
        ]
        for image, build_args in plans:
            step = time.monotonic()
            built = ensure_image(image, build_args, force=force)
            state = "built" if built else "up to date"
            log(f"{image.tag}: {state} in {time.monotonic() - step:.1f} s")
    log(f"all images ready in {time.monotonic() - started:.1f} s")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hack/build-images",
        description="Build the operator, worker, example and bench images with podman (cached).",
    )
    parser.add_argument(
        "--python-image",
        help="base image with Python >= 3.11 (default: a Debian one made offline with mmdebstrap)",
    )
    parser.add_argument("--tag", default="dev", help="tag of the images (default: dev)")
    parser.add_argument("--force", action="store_true", help="build even if the keys match")
    args = parser.parse_args(argv)
    built = build_all(args.python_image, args.tag, force=args.force)
    for image in built.values():
        size = podman("image", "inspect", "--format", "{{.Size}}", image.tag).stdout.strip()
        print(f"{image.tag}\t{int(size) / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
