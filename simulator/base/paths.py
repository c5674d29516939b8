"""Where the shipped files live: the package's data and the repository's profiles and workloads.

Commands find their defaults here (``run`` with no workload, ``profiles``, ``validate``), so a
module's position inside the package never decides what a relative path means.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = PACKAGE_DIR / "data"             # published tables copied into the project, with sources
REPO_DIR = PACKAGE_DIR.parent
HWPROFILES_DIR = REPO_DIR / "hwprofiles"
WORKLOADS_DIR = REPO_DIR / "workloads"
