"""Overlapping stages: the background iterator, the engine fed by one, and the streamed pipeline."""

from __future__ import annotations

import itertools
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from simulator.base.background import in_background
from simulator.base.errors import OptionError
from simulator.base.workers import completed, result, results
from simulator.compress.compression import StorageFormat
from simulator.engine.core import layer_work, simulate
from simulator.hardware.profile import load_profile
from simulator.model.workload import load_workload
from simulator.pipeline import RunOptions, _traffic, benchmark_works, cache_hierarchy, host_copies, simulate_variant

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture(scope="module")
def tegra():
    return load_profile("hwprofiles/tegra.yaml")


@pytest.fixture
def small(tiny_workload_file):
    return load_workload(tiny_workload_file)


def test_items_come_in_order_from_another_thread():
    threads = []

    def items():
        for i in range(200):
            threads.append(threading.current_thread())
            yield i

    assert list(in_background(items())) == list(range(200))
    assert set(threads) == {threads[0]} and threads[0] is not threading.current_thread()


def test_an_exception_of_the_producer_is_raised_as_it_was_after_the_items_before_it():
    error = OptionError("format", "no such {format}")     # SimPy could not rebuild it from its args

    def items():
        yield 1
        yield 2
        raise error

    got = []
    with pytest.raises(OptionError) as raised:
        for item in in_background(items()):
            got.append(item)
    assert raised.value is error and got == [1, 2]


def test_stopping_early_ends_the_producer():
    produced = itertools.count()
    stream = in_background(next(produced) for _ in itertools.count())   # endless
    assert [next(stream) for _ in range(3)] == [0, 1, 2]
    closer = threading.Thread(target=stream.close)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive()        # the producer thread stopped and was joined


def test_the_engine_raises_the_exception_of_its_works_iterator_as_it_was(tegra, small):
    works = benchmark_works(tegra, small, StorageFormat.CSR, RunOptions())
    error = OptionError("format", "no such {format}")

    def failing():
        yield works[0]
        raise error

    with pytest.raises(OptionError) as raised:
        simulate(tegra, failing())
    assert raised.value is error


@pytest.mark.parametrize("fmt", [StorageFormat.DENSE, StorageFormat.CSR])
def test_streamed_stages_give_what_the_stages_one_after_the_other_give(tegra, small, fmt):
    options = RunOptions(formats=(fmt,))
    streamed = simulate_variant(tegra, small, fmt, options)
    traffic, view = _traffic(tegra, small, fmt, options, lambda _: None)
    hierarchy = cache_hierarchy(tegra, view.cores)
    outcomes = [hierarchy.access(t.addresses, t.is_write, t.core, hints=t.hints) for t in traffic]
    works = [layer_work(t, o, tegra) for t, o in zip(traffic, outcomes)]
    layers = simulate(tegra, works, host_copies(tegra, small, options))
    assert streamed.layers == layers


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="no POSIX threads' signals")
@pytest.mark.parametrize("waits", [result, lambda f: results([f]), lambda f: list(completed([f])),
                                   lambda f: next(in_background(map(result, [f])))],
                         ids=["result", "results", "completed", "in_background"])
@pytest.mark.usefixtures("ctrl_c_raises")
def test_a_ctrl_c_the_kernel_hands_a_worker_thread_interrupts_the_main_threads_wait(waits):
    """The kernel may deliver a Ctrl-C to any thread that does not block it (the test sends it to a
    worker); Python raises it in the main thread, but only once that thread runs Python code again.
    Each wait on workers wakes in slices, so it raises while the work is still going, not after
    (a `run` with the signal handed to a worker thread ran on for minutes)."""
    go, release = threading.Event(), threading.Event()

    def work() -> str:
        go.wait(30)
        time.sleep(0.3)                   # the main thread is waiting by now (if not, it raises sooner)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        release.wait(30)
        return "finished"
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(work)
        try:
            with pytest.raises(KeyboardInterrupt):
                go.set()
                waits(future)
            assert not future.done()          # interrupted while the work still ran
        finally:
            release.set()
    assert results([future]) == ["finished"] and list(completed([future])) == [future]
