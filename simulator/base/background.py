"""Stages that overlap: an iterator run ahead of its consumer in a thread of its own.

A run's variant goes through stages layer by layer (traces, cache model, engine). The heavy
ones are compiled and release the GIL, so a stage that hands each layer on as soon as it is
done lets the next stage start on it while it works on the following layer, and on two cores
the stages' times overlap instead of adding up (issue #16: a warm VGG-16 run within 1 s).
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

from .workers import WAKE_S

T = TypeVar("T")

_END = object()


def in_background(items: Iterable[T], name: str = "stage") -> Iterator[T]:
    """The items of ``items``, in order, produced by a daemon thread started now, while the
    caller works on the items before.

    An exception raised by ``items`` is raised by this iterator where its next item would have
    come (the original exception, traceback and all). When the caller stops early (it closes the
    iterator or raises), the thread ends after the item it is producing; the items it ran ahead
    by are dropped. The thread does not inherit the caller's context variables.
    """
    handed: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                handed.put((item, None))
                if stop.is_set():
                    break
        except BaseException as err:        # noqa: BLE001 - handed to the consumer, raised there
            handed.put((_END, err))
            return
        handed.put((_END, None))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    return _consume(handed, stop, thread)


def _consume(handed: queue.SimpleQueue, stop: threading.Event, thread: threading.Thread) -> Iterator:
    try:
        while True:
            try:
                item, err = handed.get(timeout=WAKE_S)     # wakes for a Ctrl-C another thread was handed
            except queue.Empty:
                continue
            if err is not None:
                raise err
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
