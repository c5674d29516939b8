"""A warm ``run`` imports only what it uses (issue #16: the VGG-16 command within 1 s warm).

Each check runs in a fresh interpreter, since the test session itself has imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys

from simulator.compress.compression import StorageFormat, compress_workload
from simulator.model.workload import load_workload

#: packages a run on a filled encoding cache has no use for: torch prunes and measures, matplotlib
#: plots, pandas and friends serve the studies; scipy.linalg (and numpy.f2py with it) only told numba's
#: CPU target whether compiled np.convolve may call BLAS (see simulator.memory.jit); networkx only
#: serves code that asks for ``Workload.graph`` (a run reads ``Workload.inputs``)
NOT_FOR_A_WARM_RUN = ("torch", "matplotlib", "pandas", "sklearn", "dask", "pyarrow", "scipy.linalg", "numpy.f2py",
                      "networkx")

_RUN_AND_LIST = """
import sys
from simulator.cli import main
status = main(sys.argv[1:])
print(sorted(m for m in {names!r} if m in sys.modules))
sys.exit(status)
"""


def _python(repo_root, code: str, *args: str, cache_dir=None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if cache_dir is not None:
        env["SIMULATOR_CACHE_DIR"] = str(cache_dir)
    return subprocess.run([sys.executable, "-c", code, *args], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_warm_run_imports_no_heavy_package(repo_root, tiny_workload_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", str(tmp_path))
    compress_workload(load_workload(tiny_workload_file), StorageFormat.CSR, seed=0)   # the cache filled
    proc = _python(repo_root, _RUN_AND_LIST.format(names=NOT_FOR_A_WARM_RUN), "run", "hwprofiles/tegra.yaml",
                   "--workload", str(tiny_workload_file), "--quiet", cache_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "fc1" in proc.stdout      # the table was printed
    assert proc.stdout.strip().splitlines()[-1] == "[]"


_BLAS_AFTER_JIT = """
import sys
import numba
from simulator.memory import jit
assert "scipy.linalg.cython_blas" not in sys.modules
import scipy.linalg.cython_blas              # not blocked any more
@numba.njit
def dot(a, b):
    return np.dot(a, b)
import numpy as np
print(dot(np.arange(3.0), np.ones(3)))
"""


def test_the_blas_probe_is_skipped_only_while_numba_loads(repo_root):
    proc = _python(repo_root, _BLAS_AFTER_JIT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "3.0"      # compiled np.dot still finds BLAS through scipy


_LOAD_OR_COMPILE = """
import sys
import numpy as np
from simulator.memory.cache import CacheGeometry, CacheHierarchy
hierarchy = CacheHierarchy([CacheGeometry("L1", 2048, 64, 2, True)], 1)
outcome = hierarchy.access(np.arange(40) % 20 * 64, np.zeros(40, bool), np.zeros(40, np.int64))
print(outcome.served_level.tolist())
print("numba.typed.typeddict" in sys.modules)
import numba
@numba.njit             # in no cache: compiled, numba's registries loaded first
def add_one(x):
    return x + 1
print(add_one(41), "numba.typed.typeddict" in sys.modules)
"""


def test_cached_kernels_load_without_numba_registries_and_others_still_compile(repo_root, tmp_path, monkeypatch):
    """simulator.memory.jit: a kernel loaded from numba's cache needs none of numba's registries (the
    first process compiles, and loads them to do so; the second only loads), and a kernel in no cache
    still compiles afterwards."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    compiled, loaded = (_python(repo_root, _LOAD_OR_COMPILE) for _ in range(2))
    assert compiled.returncode == 0, compiled.stderr
    assert loaded.returncode == 0, loaded.stderr
    served = str([1] * 20 + [0] * 20)          # 20 lines fit 16 sets x 2 ways: cold misses, then hits
    assert compiled.stdout.split("\n") == [served, "True", "42 True", ""]
    assert loaded.stdout.split("\n") == [served, "False", "42 True", ""]
