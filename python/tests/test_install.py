"""Installing the package: its requirements admit the PyTorch and numpy a
distribution ships, and a broken pairing fails at import saying what to do."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from packaging.requirements import Requirement

try:
    import tomllib  # Python 3.11
except ImportError:  # pragma: no cover
    tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs Python 3.11 or tomli")

from conftest import REPO

PYPROJECT = (REPO / "python" / "pyproject.toml").read_text()


def requirement(name: str) -> Requirement:
    """The package's requirement on name (dependencies or an extra), from pyproject.toml."""
    project = tomllib.loads(PYPROJECT)["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    (req,) = [r for r in map(Requirement, lines) if r.name == name]
    return req


def test_torch_extra_admits_debians_torch():
    """Debian's python3-torch 1.13 calls itself 1.13.0a0+gitunknown: a
    pre-release below 1.13, which ">=1.13" refused (pip then fetched PyPI's
    torch and its CUDA libraries over it). Pip admits an installed
    pre-release that the specifier admits."""
    spec = requirement("torch").specifier
    assert spec.contains("1.13.0a0+gitunknown", prereleases=True)
    assert spec.contains("2.15.0") and spec.contains("1.13.1")
    assert not spec.contains("1.12.1", prereleases=True)


def test_pip_finds_the_requirements_met(tmp_path):
    """pip, without an index, finds every requirement of the package (and of
    its torch extra where torch is installed) met by what is installed: an
    install downloads nothing (the CI venv over Debian's torch, numpy 1.24
    and a pinned pyarrow; the bare venv's newest pyarrow and numpy 2)."""
    pytest.importorskip("pip")
    project = tomllib.loads(PYPROJECT)["project"]
    reqs = list(project["dependencies"])
    if importlib.util.find_spec("torch") is not None:
        reqs += project["optional-dependencies"]["torch"]
    report = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                        "--disable-pip-version-check", "--report", str(report), *reqs],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    installs = [i["metadata"]["name"] for i in json.loads(report.read_text())["install"]]
    assert installs == [], (reqs, installs)


FAKE_PYARROW = """raise ImportError("pyarrow requires NumPy 2.0 or newer, found " + __import__("numpy").__version__)"""


@pytest.mark.parametrize("missing", ["pyarrow-numpy", "pyarrow", "numpy"])
def test_broken_install_says_what_to_do(tmp_path, missing):
    """`import loaderd` where pyarrow refuses numpy 1 (pyarrow >= 26 beside a
    distribution's numpy), or where pyarrow or numpy is missing, raises an
    ImportError naming the fix."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    if missing == "pyarrow-numpy":
        (shadow / "pyarrow").mkdir()
        (shadow / "pyarrow" / "__init__.py").write_text(FAKE_PYARROW)
        numpy_major = int(__import__("numpy").__version__.split(".")[0])
        want = "pip install 'pyarrow>=14,<26'" if numpy_major < 2 else "pip install 'pyarrow>=16'"
    else:
        # A module that fails as a missing one does.
        (shadow / f"{missing}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{missing}'\", name={missing!r})")
        want = "`pip install ./python` installs loaderd with pyarrow and numpy"
    code = textwrap.dedent("""
        import sys
        try:
            import loaderd
        except ImportError as e:
            print(e)
            sys.exit(3)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO / "python")]))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 3, p.stdout + p.stderr
    assert want in p.stdout, p.stdout
    assert "loaderd needs" in p.stdout
