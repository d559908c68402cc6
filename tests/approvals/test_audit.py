"""The audit log: every approval event in a hash chain that survives purges, never forks under
concurrent appends, and gives away any entry altered, removed or inserted."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from approvals import audit, services
from approvals.models import AuditEntry, AuditHead
from tests.conftest import at_once
from tests.services import ROOT

pytestmark = pytest.mark.django_db
TABLE = AuditEntry._meta.db_table


def snippet_namespace() -> dict:
    """The verification snippet of docs/approvals.md, exactly as printed there, run."""
    docs = (ROOT / "docs" / "approvals.md").read_text()
    code = re.search(r"<!-- verify-export -->\n```python\n(.*?)```", docs, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace


def some_history(admin_user, django_capture_on_commit_callbacks) -> list:
    with django_capture_on_commit_callbacks(execute=True):
        kept = services.create("alpha", "deploy", {"diff": "+ü", "n": 1e16}, 600)
    services.decide(kept, True, admin_user, "fine")
    gone = services.create("beta", "spend", {"usd": 12.5}, 600)
    type(gone).objects.filter(pk=gone.pk).update(expires_at=timezone.now())
    assert services.expire(gone)
    services.cancel(services.create("beta", "spend", {}, 600))
    return [kept, gone]


def verify_fails(match: str) -> None:
    with pytest.raises(CommandError, match=match):
        call_command("verify_audit")


def test_every_event_is_chained_and_the_chain_survives_the_purge(admin_user, django_capture_on_commit_callbacks, capsys):
    kept, gone = some_history(admin_user, django_capture_on_commit_callbacks)
    events = list(AuditEntry.objects.values_list("event", "request_id", "actor"))
    assert events[:4] == [
        ("requested", kept.request_id, "alpha"),
        ("notified", kept.request_id, ""),
        ("vote", kept.request_id, "admin"),
        ("decided", kept.request_id, "admin"),
    ]
    assert [e for e, _, _ in events[4:]] == ["requested", "expired", "requested", "cancelled"]
    assert json.loads(AuditEntry.objects.get(event="requested", request_id=kept.request_id).data)["context"]["n"] == 1e16
    assert services.clear_expired(type(gone).objects.all()) == 1
    assert AuditEntry.objects.filter(request_id=gone.request_id).count() == 2
    call_command("verify_audit")
    assert "The audit log is intact: 8 entries." in capsys.readouterr().out


def test_an_altered_entry_is_named(admin_user, django_capture_on_commit_callbacks):
    some_history(admin_user, django_capture_on_commit_callbacks)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET data = %s WHERE seq = 3", ['{"approved":true,"reason":"I said so"}'])  # noqa: S608
    verify_fails(r"Entry #3 \(vote of \w+, row id \d+\) was altered")


def test_a_removed_entry_is_named(admin_user, django_capture_on_commit_callbacks):
    some_history(admin_user, django_capture_on_commit_callbacks)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE seq = 4")  # noqa: S608
    verify_fails(r"Entry #4 was removed: the chain goes on at entry #5")
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE seq >= 4")  # noqa: S608
    verify_fails(r"Entries after #3 were removed")


def test_an_inserted_entry_is_named(admin_user, django_capture_on_commit_callbacks):
    some_history(admin_user, django_capture_on_commit_callbacks)
    # In the middle: the later entries moved up one, a well-formed entry put at #3.
    second = AuditEntry.objects.get(seq=2)
    forged = AuditEntry(seq=3, at=second.at, event="vote", request_id=second.request_id, actor="mallory", data="{}")
    forged.prev_hash, forged.hash = second.hash, audit.chain_hash(second.hash, forged.body())
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {TABLE} SET seq = seq + 1000 WHERE seq >= 3")  # noqa: S608
        cursor.execute(f"UPDATE {TABLE} SET seq = seq - 999 WHERE seq >= 1000")  # noqa: S608
        columns = "seq, at, event, request_id, actor, data, prev_hash, hash"
        cursor.execute(
            f"INSERT INTO {TABLE} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
            [3, forged.at, forged.event, forged.request_id, forged.actor, forged.data, forged.prev_hash, forged.hash],
        )
    verify_fails(r"Entry #4 \(vote of \w+, row id \d+\) does not follow entry #3: an entry was inserted or removed there")


def test_an_entry_added_past_the_head_is_named(admin_user, django_capture_on_commit_callbacks):
    some_history(admin_user, django_capture_on_commit_callbacks)
    last = AuditEntry.objects.last()
    forged = AuditEntry(seq=last.seq + 1, at=last.at, event="decided", request_id=last.request_id, data="{}")
    forged.prev_hash, forged.hash = last.hash, audit.chain_hash(last.hash, forged.body())
    forged.save()  # written around the append, as raw SQL would
    verify_fails(r"Entry #9 was inserted: the chain's head names #8 as the last")


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_never_fork_the_chain(admin_user):
    """Threads, each with its own database connection, append at once: through requests made
    (notified, once committed) and cancelled, and bare appends. The chain has each entry once,
    in one line."""

    def work():
        for n in range(5):
            services.cancel(services.create("alpha", "deploy", {"n": n}, 600))
            audit.append("vote", "bare", "tester", n=n)
        return True

    assert at_once(work, times=8) == [True] * 8
    assert list(AuditEntry.objects.values_list("seq", flat=True)) == list(range(1, 8 * 5 * 4 + 1))
    assert audit.verify().problem == "" and audit.verify().count == 160
    assert AuditHead.objects.get().seq == 160


def test_an_export_verifies_with_the_documented_snippet_and_a_tampered_one_does_not(
    admin_user, django_capture_on_commit_callbacks, tmp_path
):
    some_history(admin_user, django_capture_on_commit_callbacks)
    export = tmp_path / "audit.ndjson"
    call_command("export_audit", "-o", str(export))
    verify_export = snippet_namespace()["verify_export"]
    assert verify_export(export) == (8, AuditHead.objects.get().hash)
    lines = export.read_text(encoding="utf-8").splitlines()
    altered = [*lines[:2], lines[2].replace('"admin"', '"mallory"'), *lines[3:]]
    for broken, entry in ((lines[:3] + lines[4:], "#4"), (altered, "#3")):
        Path(export).write_text("\n".join(broken) + "\n", encoding="utf-8")
        with pytest.raises(ValueError, match=f"entry {entry} "):
            verify_export(export)


def test_the_commands_exit_status(server_env, admin_user, django_capture_on_commit_callbacks):
    some_history(admin_user, django_capture_on_commit_callbacks)  # (committed: each request notified)

    def run(*args):
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=server_env, capture_output=True, text=True)

    intact = run("verify_audit")
    assert (intact.returncode, intact.stdout.strip()) == (0, "The audit log is intact: 10 entries.")
    exported = run("export_audit")
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 10
    assert json.loads(exported.stdout.splitlines()[0])["event"] == "requested"
    AuditEntry.objects.filter(seq=5).update(actor="someone else")
    broken = run("verify_audit")
    assert broken.returncode == 1 and "Entry #5 (requested of" in broken.stderr and "was altered" in broken.stderr
