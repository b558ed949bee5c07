"""A stop that overruns its deadline names what still runs and ends the process."""

from __future__ import annotations

import asyncio
import logging
import threading

from edge_agent.stop_watchdog import EXIT_STOP_OVERRUN, StopWatchdog


def test_an_overrunning_stop_names_the_stuck_task_and_exits(caplog):
    exited = threading.Event()
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        exited.set()

    async def swallows_cancel() -> None:
        # A task that ignores its cancellation (until the test is over): what would keep a
        # stopping agent alive.
        while not exited.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                continue

    async def main() -> None:
        stuck = asyncio.create_task(swallows_cancel(), name="stuck-loop")
        await asyncio.sleep(0)
        stuck.cancel()
        dog = StopWatchdog(deadline_s=0.05, exit_process=exit_process)
        dog.arm(asyncio.get_running_loop())
        dog.arm(asyncio.get_running_loop())  # a second SIGTERM: one deadline
        assert await asyncio.to_thread(exited.wait, 10)
        await asyncio.wait_for(stuck, 10)

    with caplog.at_level(logging.CRITICAL, logger="edge_agent.stop_watchdog"):
        asyncio.run(asyncio.wait_for(main(), 20))
    assert codes == [EXIT_STOP_OVERRUN]
    text = caplog.text
    assert "stop overran 0.05 s" in text and "stuck-loop:" in text
    assert "swallows_cancel" in text  # where it waits


def test_a_stop_that_finishes_is_not_ended():
    exited = threading.Event()
    dog = StopWatchdog(deadline_s=0.05, exit_process=lambda code: exited.set())

    async def main() -> None:
        dog.arm(asyncio.get_running_loop())

    asyncio.run(main())
    dog.disarm()
    assert not exited.wait(0.3)


def test_the_process_still_ends_when_the_diagnosis_itself_fails(monkeypatch):
    import edge_agent.stop_watchdog as sw

    def broken(loop):
        raise RuntimeError("cannot read the tasks")

    monkeypatch.setattr(sw, "pending_tasks", broken)
    exited = threading.Event()
    codes: list[int] = []

    def exit_process(code: int) -> None:
        codes.append(code)
        exited.set()

    dog = StopWatchdog(deadline_s=0.05, exit_process=exit_process)
    loop = asyncio.new_event_loop()
    try:
        dog.arm(loop)
        assert exited.wait(10)
    finally:
        loop.close()
    assert codes == [EXIT_STOP_OVERRUN]
