"""The progress bar of long commands (exports, imports, backups): on stderr, so stdout stays the result."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


class Bar:
    """Call it with how many more are done; or `set` where the work stands."""

    def __init__(self, progress: Progress, task: TaskID):
        self.progress, self.task = progress, task

    def __call__(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def set(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Bar]:
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(file=sys.stderr), transient=True) as progress:
        yield Bar(progress, progress.add_task(description, total=total))
