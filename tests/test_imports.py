"""A warm ``run`` imports only what it uses (issue #16: the VGG-16 command within 1 s warm).

Each check runs in a fresh interpreter, since the test session itself has imported everything.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from simulator.compress.compression import StorageFormat, compress_workload
from simulator.model.workload import load_workload

#: packages a run on a filled encoding cache has no use for: torch prunes and measures, matplotlib
#: plots, pandas and friends serve the studies; scipy.linalg only numba's BLAS probe would import
#: (see simulator/base/numbatarget.py)
NOT_FOR_A_WARM_RUN = ("torch", "matplotlib", "pandas", "sklearn", "dask", "pyarrow", "scipy.linalg")

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


def test_numba_target_loads_without_scipy_linalg_and_blas_still_works(repo_root):
    code = """
import sys
import numpy as np
from simulator.base.numbatarget import load_numba_target
load_numba_target()
import numba.np.arraymath
print("scipy.linalg" in sys.modules, "scipy.linalg.cython_blas" in sys.modules)
import numba
dot = numba.njit(lambda a, b: np.dot(a, b))
a = np.arange(6.0).reshape(2, 3)
print(dot(a, a.T).tolist(), "scipy.linalg" in sys.modules)
"""
    proc = _python(repo_root, code)
    assert proc.returncode == 0, proc.stderr
    loaded, used = proc.stdout.strip().splitlines()
    assert loaded == "False False"      # no stale None entry left behind either
    assert used == "[[5.0, 14.0], [14.0, 50.0]] True"   # a BLAS kernel still compiles, importing scipy then


@pytest.mark.parametrize("already", [False, True])
def test_numba_target_loading_leaves_an_imported_scipy_alone(repo_root, already):
    code = f"""
import sys
{"import scipy.linalg" if already else ""}
from simulator.base.numbatarget import load_numba_target
load_numba_target()
load_numba_target()
import numba.np.arraymath as arraymath
print(arraymath._HAVE_BLAS)
"""
    proc = _python(repo_root, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(already)
