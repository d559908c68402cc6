"""core.group_commit's promise to each write: an answer, whatever becomes of its group."""

import asyncio
import threading

from core.group_commit import GroupCommit


def test_writes_whose_group_is_cancelled_are_cancelled_instead_of_left_waiting():
    started, release = threading.Event(), threading.Event()

    def store(items: list[str]) -> list[str]:
        started.set()
        release.wait(60)
        return items

    group = GroupCommit(store)

    async def write_and_cancel():
        writes = asyncio.gather(group.write("a"), group.write("b"), return_exceptions=True)
        await asyncio.to_thread(started.wait, 60)
        group.loops[asyncio.get_running_loop()].task.cancel()  # the loop closing, say
        try:
            return await asyncio.wait_for(writes, timeout=60)  # a guard against hanging, not a timing
        finally:
            release.set()

    assert [type(outcome) for outcome in asyncio.run(write_and_cancel())] == [asyncio.CancelledError] * 2
    assert group.sizes == [2]
