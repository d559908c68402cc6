"""The audit log of approvals: every event of every request, in a hash chain.

Each entry's hash is SHA-256 over the previous entry's hash (64 hex characters, ASCII; the first
entry's previous hash is GENESIS_HASH, 64 zeros) followed by the entry's canonical JSON: its
fields seq, at, event, request_id, actor and data as one JSON object with sorted keys, no
whitespace, UTF-8 (`canonical_json`). Changing, removing or inserting an entry breaks the chain
at that entry; `verify` finds where. Appends lock the chain's head row in the transaction of the
change they record, so concurrent appends queue up and the chain never forks (PostgreSQL: SELECT
... FOR UPDATE; SQLite: its transactions take the write lock at BEGIN).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from approvals.models import GENESIS_HASH, AuditEntry, AuditHead


def canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def chain_hash(prev_hash: str, body: dict) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(body)).hexdigest()


def append(event: str, request_id: str, actor: str = "", **data) -> AuditEntry:
    """Add an entry at the end of the chain, in the caller's transaction (or one of its own)."""
    with transaction.atomic():
        head = _locked_head()
        entry = AuditEntry(
            seq=head.seq + 1,
            at=timezone.now(),
            event=event,
            request_id=request_id,
            actor=actor[:200],
            data=canonical_json(data).decode("utf-8"),
            prev_hash=head.hash,
        )
        entry.hash = chain_hash(head.hash, entry.body())
        entry.save()
        AuditHead.objects.filter(pk=head.pk).update(seq=entry.seq, hash=entry.hash)
    return entry


def _locked_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # the first append ever (or after a flush of the tables)
        last = AuditEntry.objects.order_by("-seq").first()
        AuditHead.objects.get_or_create(pk=1, defaults={"seq": last.seq, "hash": last.hash} if last else {})
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def trail(request_id: str):
    return AuditEntry.objects.filter(request_id=request_id).order_by("seq")


@dataclass
class Result:
    count: int  # entries checked
    problem: str = ""  # empty when the chain is intact
    seq: int | None = None  # the entry where it breaks


def verify(advance: Callable[[int], None] = lambda n: None) -> Result:
    """Walk the chain from its first entry; stop at the first one altered, removed or inserted."""
    prev_hash, expected, count = GENESIS_HASH, 1, 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        name = f"#{entry.seq} ({entry.event} of {entry.request_id}, row id {entry.pk})"
        if entry.seq != expected:
            missing = f"#{expected}" if entry.seq == expected + 1 else f"#{expected} to #{entry.seq - 1}"
            return Result(count, f"Entry {missing} was removed: the chain goes on at entry {name}.", expected)
        if entry.prev_hash != prev_hash:
            return Result(
                count, f"Entry {name} does not follow entry #{entry.seq - 1}: an entry was inserted or removed there.", entry.seq
            )
        if chain_hash(prev_hash, entry.body()) != entry.hash:
            return Result(count, f"Entry {name} was altered: its content does not match its hash.", entry.seq)
        prev_hash, expected, count = entry.hash, expected + 1, count + 1
        advance(1)
    head = AuditHead.objects.filter(pk=1).first()
    if head is None or (head.seq, head.hash) == (count, prev_hash):
        return Result(count)
    if head.seq > count:
        return Result(count, f"Entries after #{count} were removed: the chain's head names entry #{head.seq}.", count + 1)
    if head.seq < count:
        return Result(count, f"Entry #{head.seq + 1} was inserted: the chain's head names #{head.seq} as the last.", head.seq + 1)
    return Result(count, f"Entry #{count} was replaced: its hash is not the one the chain's head recorded.", count)


def export_lines() -> Iterator[str]:
    """The chain as NDJSON, one entry a line, with its prev_hash and hash (docs/approvals.md)."""
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        yield json.dumps({**entry.body(), "prev_hash": entry.prev_hash, "hash": entry.hash}, ensure_ascii=False)
