"""Where the shipped files live: the package's data, and the profiles, workloads and examples.

Commands find their defaults here (``run`` with no workload, ``profiles``, ``validate``), so a
module's position inside the package never decides what a relative path means.

The shipped profiles, workloads and examples have one canonical copy, at the top of the
repository (``hwprofiles/``, ``workloads/``, ``examples/``), where the README's commands name
them. Building a wheel maps those folders into the package as ``simulator/data/hwprofiles`` and
so on (``[tool.setuptools.package-dir]`` in pyproject.toml). So an installed package finds them
through :mod:`importlib.resources`, and a clone (run in place or installed editable) finds them at
the top of the repository: :func:`shipped_dir` tries the package first, then the clone.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from .errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = PACKAGE_DIR.parent      # a clone's root (in an installed package: site-packages, unused)


def shipped_dir(name: str) -> Path:
    """The folder ``name`` (``data``, ``hwprofiles``, ``workloads``, ``examples``) of shipped files.

    Inside the installed package it is ``simulator/data/NAME`` (``simulator/data`` for ``data``);
    in a clone, the package's ``data`` folder or the repository's top-level ``NAME``.
    """
    package = files(__name__.split(".")[0]).joinpath("data")
    packaged = package if name == "data" else package.joinpath(name)
    if packaged.is_dir():
        # wheels install unzipped, so the resource is a real folder that Path can read
        return Path(str(packaged))
    return REPO_DIR / name


DATA_DIR = shipped_dir("data")              # published tables copied into the project, with sources
HWPROFILES_DIR = shipped_dir("hwprofiles")
WORKLOADS_DIR = shipped_dir("workloads")
EXAMPLES_DIR = shipped_dir("examples")


def shipped_names(folder: Path) -> list[str]:
    """The names (file stems) of the YAML files in a shipped folder, sorted."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def find_shipped(arg: str | Path, folder: Path, what: str) -> Path:
    """The file a command-line argument names: a path that exists, or a shipped file by name.

    ``tegra``, ``tegra.yaml`` and the repository's own path ``hwprofiles/tegra.yaml`` all name
    the shipped profile from any directory, when no such file exists where the command runs.
    Anything else that does not exist is one :class:`ConfigError` line listing what ships.
    """
    path = Path(arg)
    if path.is_file():
        return path
    parts = path.parts
    if path.exists() or not (len(parts) == 1 or (len(parts) == 2 and parts[0] == folder.name)):
        return path        # a folder, or a path elsewhere: the loader says what is wrong with it
    stem = path.name[:-len(".yaml")] if path.name.endswith(".yaml") else path.name
    candidate = folder / f"{stem}.yaml"
    if candidate.is_file():
        return candidate
    raise ConfigError(str(arg), "", f"no such file, and no shipped {what} of that name "
                      f"(shipped: {', '.join(shipped_names(folder))})")


def find_profile(arg: str | Path) -> Path:
    """A profile argument: a YAML path, or a shipped profile's name (``tegra``)."""
    return find_shipped(arg, HWPROFILES_DIR, "profile")


def find_workload(arg: str | Path) -> Path:
    """A workload argument: a YAML path, or a shipped workload's name (``vgg16``)."""
    return find_shipped(arg, WORKLOADS_DIR, "workload")
