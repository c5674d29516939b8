"""Worker processes that behave: they ignore Ctrl-C (the parent alone reports it and shuts the
pool down) and they exit when their parent dies, even by SIGKILL (a pool worker would otherwise
wait on its queue forever). And a parent that waits on its workers in short slices: the kernel may
hand a Ctrl-C to any thread of the process, and Python raises it in the main thread only when that
thread runs Python code again, which a wait with no timeout never lets it do."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

#: how often a worker checks that its parent is alive where the operating system cannot tell it
PARENT_POLL_S = 1.0
#: how often a thread waiting on workers wakes to take a Ctrl-C that the kernel handed another thread
WAKE_S = 0.2

T = TypeVar("T")


def result(future: Future[T]) -> T:
    """``future.result()``, waiting in slices of :data:`WAKE_S`: a Ctrl-C delivered to a worker
    thread is raised here at the next slice instead of once the future is done."""
    while not future.done():
        wait((future,), timeout=WAKE_S)
    return future.result()


def results(futures: Iterable[Future[T]]) -> list[T]:
    """Every future's result, in order (the first error in order is raised), as :func:`result`."""
    return [result(future) for future in futures]


def completed(futures: Iterable[Future[T]]) -> Iterator[Future[T]]:
    """The futures as they finish (``as_completed``), waiting in slices of :data:`WAKE_S`."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=WAKE_S, return_when=FIRST_COMPLETED)
        yield from done


def _exit_with_parent(parent_pid: int) -> None:
    """Have the operating system kill this process when its parent dies (Linux), and poll as well: the
    prctl setting is lost if the parent was already gone, and other systems have no prctl."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):   # no prctl: the watchdog below still works
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:   # re-parented: the parent is gone
                os._exit(1)
            time.sleep(PARENT_POLL_S)

    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def init_worker(parent_pid: int, then: Optional[Callable[..., Any]] = None, *args: Any) -> None:
    """Pool ``initializer``: ignore SIGINT, die with ``parent_pid``, then run ``then(*args)``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    if then is not None:
        then(*args)


def worker_initargs(then: Optional[Callable[..., Any]] = None, *args: Any) -> tuple[Any, ...]:
    """``initargs`` for :func:`init_worker` in a pool created by this process."""
    return (os.getpid(), then, *args)


def stop_pool(pool: Any, interrupted: bool) -> None:
    """Shut a ``ProcessPoolExecutor`` down: wait for it normally; on an interruption (Ctrl-C, an
    error) cancel what is queued and end the workers now rather than wait for their points."""
    if not interrupted:
        pool.shutdown(wait=True, cancel_futures=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())   # private, but the only handle on them
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None   # a second Ctrl-C
    try:                                                                                   # must not cut this short
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
