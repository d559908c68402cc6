"""The README and docs/ stay true: every relative link and anchor resolves, and the README's
examples work as written against the real server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.services import ROOT

DOCS = [ROOT / "README.md", ROOT / "client" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
EXAMPLE = re.compile(r"<!-- readme-example: (\S+) -->\n```\w+\n(.*?)^```", re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        name, n = slug(heading), 1
        while name in found:
            name, n = f"{slug(heading)}-{n}", n + 1
        found.add(name)
    return found


def links(path: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", path.read_text()))


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL: not ours to check offline
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    return broken


@pytest.mark.parametrize("path", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(path):
    assert broken_links(path) == []


def test_the_link_check_finds_a_missing_file_and_a_wrong_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## The analytics page: `/analytics/`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#the-analytics-page-analytics) [gone](missing.md) [bad](other.md#nope) "
        "[self](#a-heading) ![pic](images/none.png) [web](https://example.com/x)\n\n## A heading\n"
        "```\n[inside a fence](ignored.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nope: no heading with that anchor",
        "images/none.png: no such file",
    ]


def test_the_readme_is_the_front_door_not_the_reference():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    unlinked = {path.name for path in (ROOT / "docs").glob("*.md")} - {Path(target).name for target in links(ROOT / "README.md")}
    assert unlinked == set()  # every page of the reference is reachable from the front door
    assert not re.search(r"\bseed \d{3}\b|\battune\b", "\n".join(path.read_text() for path in DOCS), re.IGNORECASE)
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme):
        assert (ROOT / image).stat().st_size > 10_000, f"{image} is not a real screenshot"


def readme_examples() -> dict[str, str]:
    return {name: code for name, code in EXAMPLE.findall((ROOT / "README.md").read_text())}


@pytest.mark.django_db(transaction=True)
def test_the_readmes_examples_work_as_written(live_asgi, server_env, tmp_path):
    """The key made by the README's command; each example run as a reader would paste it (the
    server on this test's port instead of 8000); what they sent is then on the server."""
    from approvals.models import ApprovalRequest
    from quality.models import LlmUsage
    from runs.models import Run
    from traces.models import Span

    examples = readme_examples()
    assert set(examples) == {"sdk", "coordination", "opentelemetry", "curl"}
    made = subprocess.run(
        ["bash", "-c", "export KEY=$(.venv/bin/python manage.py create_agent_key my-agent | tail -n 1); echo $KEY"],
        cwd=ROOT,
        env=server_env,
        capture_output=True,
        text=True,
        check=True,
    )
    env = {**server_env, "KEY": made.stdout.strip(), "TELEMETRY_SPOOL_DIR": str(tmp_path / "spool")}

    def run(language: list[str], code: str) -> str:
        code = code.replace("http://127.0.0.1:8000", live_asgi)
        done = subprocess.run([*language, code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    printed = run([sys.executable, "-c"], examples["sdk"] + examples["coordination"] + "\nclient.close()\n")
    assert printed.strip().startswith("False") and "expired" in printed.lower()
    run([sys.executable, "-c"], examples["opentelemetry"])
    if shutil.which("curl"):
        assert '"status"' in run(["bash", "-c"], examples["curl"])
    else:  # the same request, for a machine without curl
        headers = {"Authorization": f"Api-Key {env['KEY']}"}
        body = {"status": "indexing", "progress": 0.4, "current_task": "page 40 of 100"}
        assert httpx.post(f"{live_asgi}/api/v1/agents/my-agent/heartbeat", json=body, headers=headers).status_code == 200

    run_ = Run.objects.get(agent_name="my-agent", job_type="translate")
    assert run_.status == "success" and run_.events.filter(event_type="chunk").count() == 1
    assert LlmUsage.objects.filter(agent_name="my-agent", model="claude-sonnet-4", input_tokens=1200).exists()
    assert LlmUsage.objects.filter(agent_name="my-agent", input_tokens=900, output_tokens=80).exists()
    assert Span.objects.get(name="plan").agent_name == "my-agent"
    assert ApprovalRequest.objects.get(approval_type="deploy").status == "expired"
    state = httpx.get(f"{live_asgi}/api/v1/agents/my-agent", headers={"Authorization": f"Api-Key {env['KEY']}"}).json()
    assert state["status"] == "indexing" and state["current_task"] == "page 40 of 100"


def test_every_setting_read_from_the_environment_is_documented():
    settings = (ROOT / "telemetry_site" / "settings.py").read_text()
    read = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]+)\"", settings))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (ROOT / "docs" / "configuration.md").read_text()))
    assert len(read) > 50 and read - documented == set()
