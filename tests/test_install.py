"""Install anywhere: the wheel carries the shipped profiles, workloads and examples, commands find
them by name from any directory, and the outputs say which version wrote them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from simulator import cli
from simulator.base.errors import ConfigError
from simulator.base.paths import HWPROFILES_DIR, WORKLOADS_DIR, find_profile, find_workload
from simulator.base.version import OUTPUT_SCHEMA_VERSION, __version__

# what a wheel is built from (copied, so the build leaves nothing in the checkout)
SOURCES = ["pyproject.toml", "README.md", "simulator", "hwprofiles", "workloads", "examples"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory, repo_root) -> Path:
    """The wheel built from a copy of the sources, installed (no dependencies) into a folder."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    for name in SOURCES:
        origin = repo_root / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy(origin, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(pip + ["wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
                                  "-w", str(root / "dist")], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    # the build is quiet: no setuptools deprecation or "package would be ignored" warnings
    assert "Warning" not in build.stdout + build.stderr, build.stdout + build.stderr
    (wheel,) = (root / "dist").glob("*.whl")
    target = root / "site"
    # --target installs into the folder only; the environment's own install is left alone
    done = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def _run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python ARGS`` from ``cwd`` with only the installed folder added to the path (the
    dependencies come from this interpreter's environment)."""
    env = {**os.environ, "PYTHONPATH": str(target), "SIMULATOR_CACHE_DIR": ""}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_carries_the_shipped_files(installed, repo_root):
    data = installed / "simulator" / "data"
    for folder in ("hwprofiles", "workloads", "examples"):
        shipped = sorted(p.name for p in (repo_root / folder).glob("*.yaml"))
        assert shipped and sorted(p.name for p in (data / folder).glob("*.yaml")) == shipped
    assert (data / "eie_table4.csv").is_file()


def test_the_installed_package_runs_a_shipped_profile_by_name_from_an_empty_folder(installed, tmp_path):
    where = _run_installed(installed, tmp_path, "-c", "import simulator; print(simulator.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout   # not the checkout
    run = _run_installed(installed, tmp_path, "-m", "simulator", "run", "tegra", "--json", "out.json")
    assert run.returncode == 0, run.stderr
    assert "AlexNet" in run.stdout and "pruned" in run.stdout
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["tool_version"] == __version__ and doc["schema_version"] == OUTPUT_SCHEMA_VERSION
    assert Path(doc["profile_path"]).is_relative_to(installed)
    # the repository's own path to a shipped file works too, and the listing finds every profile
    listing = _run_installed(installed, tmp_path, "-m", "simulator", "profiles")
    assert listing.returncode == 0, listing.stderr
    assert all(p.name in listing.stdout for p in HWPROFILES_DIR.glob("*.yaml"))
    assert list(tmp_path.iterdir()) == [tmp_path / "out.json"]    # nothing else written where it ran


def test_the_console_script_prints_the_version(installed, tmp_path):
    script = installed / "bin" / "simulator"
    if not script.is_file():
        pytest.skip("pip wrote no console script into the target folder")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run([sys.executable, str(script), "--version"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["compressed-inference-simulator", __version__]


@pytest.mark.parametrize("arg", ["tegra", "tegra.yaml", "hwprofiles/tegra.yaml"])
def test_a_shipped_profile_is_found_by_name_from_any_folder(arg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert find_profile(arg) == HWPROFILES_DIR / "tegra.yaml"


def test_a_file_in_the_working_folder_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vgg16").write_text("name: mine\n")
    assert find_workload("vgg16") == Path("vgg16")
    assert find_workload("workloads/vgg16.yaml") == WORKLOADS_DIR / "vgg16.yaml"


def test_an_unknown_name_is_one_line_listing_what_ships(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"tegra2: no such file, and no shipped profile .*shipped: a100-sxm4, eie, "):
        find_profile("tegra2")
    assert cli.main(["run", "tegra", "--workload", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vgg17: no such file, and no shipped workload" in err and "vgg16" in err


def test_run_by_name_from_another_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMULATOR_CACHE_DIR", "")
    assert cli.main(["run", "eie", "--workload", "eie"]) == 0
    out = capsys.readouterr().out
    assert "EIE" in out and "FC6" in out.upper()


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"compressed-inference-simulator {__version__}"


def test_json_outputs_start_with_the_tool_and_schema_version(tmp_path):
    from simulator.output.report import write_json_document

    write_json_document({"rows": [1]}, tmp_path / "x.json", "--json")
    doc = json.loads((tmp_path / "x.json").read_text())
    assert list(doc)[:3] == ["tool", "tool_version", "schema_version"] and doc["rows"] == [1]


# ---- the profile schema ------------------------------------------------------------------

def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    return schema


def _errors(value, schema: dict, root: dict, where: str = "") -> list[str]:
    """A small JSON Schema checker for the keywords pydantic emits (no jsonschema dependency)."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        tries = [_errors(value, option, root, where) for option in schema["anyOf"]]
        return [] if any(not t for t in tries) else min(tries, key=len)
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    checks = {"string": lambda v: isinstance(v, str),
              "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "boolean": lambda v: isinstance(v, bool), "null": lambda v: v is None,
              "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list)}
    if kind and not checks[kind](value):
        return [f"{where}: {value!r} is not {kind}"]
    if kind == "string" and "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{where}: {value!r} does not match the pattern"]
    out = []
    if kind == "object":
        props = schema.get("properties", {})
        out += [f"{where}.{k}: missing" for k in schema.get("required", []) if k not in value]
        for key, item in value.items():
            if key in props:
                out += _errors(item, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                out.append(f"{where}.{key}: not allowed")
            elif isinstance(schema.get("additionalProperties"), dict):
                out += _errors(item, schema["additionalProperties"], root, f"{where}.{key}")
    if kind == "array":
        for i, item in enumerate(value):
            prefix = schema.get("prefixItems", [])
            sub = prefix[i] if i < len(prefix) else schema.get("items", {})
            out += _errors(item, sub, root, f"{where}[{i}]")
    return out


@pytest.fixture(scope="module")
def profile_schema() -> dict:
    from simulator.base.schema import json_schema
    from simulator.hardware.profile import HardwareProfile

    return json_schema(HardwareProfile, "profile")


def test_profiles_schema_prints_the_json_schema(capsys, profile_schema):
    assert cli.main(["profiles", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["$schema"].startswith("https://json-schema.org/") and printed["properties"].keys() == \
        profile_schema["properties"].keys()
    assert "path" not in printed["properties"]     # filled in by the loader, never written


@pytest.mark.parametrize("name", sorted(p.stem for p in HWPROFILES_DIR.glob("*.yaml")))
def test_every_shipped_profile_matches_the_schema(name, profile_schema):
    data = yaml.safe_load((HWPROFILES_DIR / f"{name}.yaml").read_text())
    assert _errors(data, profile_schema, profile_schema) == []


def test_the_schema_describes_units_as_the_files_write_them(profile_schema):
    data = yaml.safe_load((HWPROFILES_DIR / "tegra.yaml").read_text())
    size = _resolve(profile_schema["$defs"]["CacheLevel"], profile_schema)["properties"]["size"]
    assert size["type"] == "string" and "KiB" in size["description"]
    data["memory"]["caches"][0]["size"] = "32 KB/s"        # a bandwidth where a size belongs
    assert any("caches[0].size" in e for e in _errors(data, profile_schema, profile_schema))
    data["memory"]["caches"][0]["size"] = 32768            # a bare number: the loader refuses it too
    assert any("caches[0].size" in e for e in _errors(data, profile_schema, profile_schema))
