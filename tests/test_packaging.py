"""The package as users get it: a wheel built from the repository holds the shipped policies as
package data (from the top-level ``policies/``, not a copy kept by hand), and after a plain,
non-editable install ``router ask`` answers from any directory.

The wheel is built offline (``--no-build-isolation --no-index``) from a copy of the sources, so
the build leaves nothing in the repository. It is installed with ``--no-deps`` into a fresh venv
that finds its dependencies through a ``.pth`` line naming this venv's site-packages: that adds
the directory to ``sys.path`` without running its ``.pth`` files, so this venv's editable
install of the project is invisible there and ``router`` can only come from the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib import resources
from pathlib import Path

import pytest

import router
from router.policy.sources import PACKAGE

ROOT = Path(__file__).resolve().parent.parent
POLICIES = sorted((ROOT / "policies").glob("*.yaml"))
SOURCES = ("pyproject.toml", "setup.py", "README.md", "router", "policies")
TIMEOUT_S = 300


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode in ok, f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ROUTER_POLICY", "VIRTUAL_ENV")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, src / name)
    dist = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(dist), str(src)], cwd=src, env=clean_env())
    (built,) = dist.glob("policy_router-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed and this venv's packages as its dependencies."""
    home = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", str(home)], cwd=home, env=clean_env())
    python = home / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)], cwd=home, env=clean_env())
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                  cwd=home).stdout.strip()
    Path(purelib, "_deps_from_test_venv.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return home


def test_the_wheel_ships_every_policy_as_package_data_and_every_package(wheel: Path):
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
        for path in POLICIES:
            assert whl.read(f"router/policy/shipped/{path.name}") == path.read_bytes()
        modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "router").rglob("*.py")}
        assert modules <= names, sorted(modules - names)  # a folder without __init__.py would be left out
        assert not any(n.startswith("policies/") for n in names)  # no stray top-level package
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "router = router.cli.main:main" in whl.read(entry_points).decode()


def test_an_editable_install_reads_the_policies_folder_itself():
    if not Path(router.__file__).resolve().is_relative_to(ROOT):
        pytest.skip("router is not imported from this repository (not an editable install)")
    shipped = resources.files(PACKAGE)
    assert isinstance(shipped, Path) and shipped.resolve() == (ROOT / "policies").resolve()


@pytest.mark.slow
def test_router_ask_answers_from_any_directory_after_a_plain_install(venv: Path, tmp_path: Path):
    where = run([str(venv / "bin" / "python"), "-c",
                 "import router; from router.policy.sources import resolve_policy, packaged_policies; "
                 "print(router.__file__); print(resolve_policy().source); print(*packaged_policies())"],
                cwd=tmp_path, env=clean_env()).stdout.splitlines()
    assert all(Path(line).resolve().is_relative_to(venv.resolve()) for line in where[:2]), where
    assert where[2].split() == [p.stem for p in POLICIES]

    proc = run([str(venv / "bin" / "router"), "ask", "What is the capital of France?", "--set", "offline=true",
                "--json"], cwd=tmp_path, env=clean_env(), ok=(0, 3))  # 3: exhausted, the best answer printed
    reply = json.loads(proc.stdout)
    assert reply["routing"]["status"] == ("accepted" if proc.returncode == 0 else "exhausted")
    assert "Paris" in reply["answer"]
    assert (reply["routing"]["policy"], reply["routing"]["final_model"]) == ("default", "gemma-270m")
    assert list(tmp_path.iterdir()) == []  # answering wrote nothing into the working directory


@pytest.mark.slow
def test_init_schema_and_packaged_names_work_after_a_plain_install(venv: Path, tmp_path: Path):
    cli = str(venv / "bin" / "router")
    run([cli, "init", "--from", "offline"], cwd=tmp_path, env=clean_env())
    assert (tmp_path / "policy.yaml").read_bytes() == (ROOT / "policies" / "offline.yaml").read_bytes()
    validated = run([cli, "validate", "policy.yaml", "private"], cwd=tmp_path, env=clean_env()).stdout
    assert "policy.yaml: ok (policy 'offline'" in validated and "private: ok" in validated
    schema = json.loads(run([cli, "schema"], cwd=tmp_path, env=clean_env()).stdout)
    assert schema["title"] == "policy-router policy file (version 1)"
