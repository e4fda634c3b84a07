"""Transcription yields the CPU to the meeting.

Captions may lag; forwarded audio and video may not. The threads that decode speech run
at a lower scheduling priority than the event loop (Linux schedules threads one by one,
and a thread's priority passes to the threads it starts, such as CTranslate2's workers
started while a model loads), so a busy machine slows captions first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

#: How much nicer than the rest of the process (0 to 19).
NICENESS = 10

T = TypeVar("T")


def lower_priority() -> None:
    """Lower the calling thread's priority by :data:`NICENESS` (where the OS lets a
    thread have its own; elsewhere nothing happens)."""
    if not hasattr(os, "setpriority"):
        return
    try:
        thread = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + NICENESS))
    except OSError:
        pass


def in_low_priority_thread(make: Callable[[], T]) -> T:
    """Run ``make()`` in a short-lived thread of lower priority and return its result (or
    raise its exception): the threads it starts keep that priority."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        lower_priority()
        try:
            result.append(make())
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=run, name="transcription-load")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]
