"""`loaderd bench --python`: the Python client rows, measured for real."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")  # the LoaderdDataset row needs the [torch] extra

from conftest import REPO  # noqa: E402


def test_bench_python_rows(loaderd_bin, sample_data, tmp_path):
    out = tmp_path / "bench"
    p = subprocess.run([str(loaderd_bin), "bench", "--data", str(sample_data), "--max-images", "61",
                        "--repeat", "1", "--max-workers", "1", "--epochs", "2", "--clients", "1",
                        "--python", sys.executable, "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "PYTHON CLIENTS" in p.stdout
    rep = json.loads((out / "bench.json").read_text())
    rows = {r["name"]: r for r in rep["python_clients"]}
    # The package's two clients over Flight, then reading the cache in place.
    assert list(rows) == ["pyarrow", "loaderd", "dataset", "loaderd-local", "dataset-local"]
    for name, r in rows.items():
        assert not r.get("error"), (name, r)
        assert r["point"]["gb_per_sec"] > 0 and r["point"]["images"] % 61 == 0, (name, r)
        assert r["versions"]["pyarrow"]
    assert rows["loaderd"]["versions"]["malloc"] == "tuned"
    ratios = {r["name"]: r for r in rep["ratios"]["python"]}
    assert all(r["over_go_client"] > 0 and r["over_loopback"] > 0 for r in ratios.values())


@pytest.mark.parametrize("client,blocked,want", [
    ("pyarrow", "pyarrow", "pip install ./python"),
    ("dataset", "torch", "pip install './python[torch]'"),
])
def test_bench_python_names_what_is_missing(tmp_path, client, blocked, want):
    """A --python lacking a package gets one error naming that Python, the
    package it cannot import and the install that brings it."""
    (tmp_path / blocked).mkdir()
    (tmp_path / blocked / "__init__.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{blocked}'\", name={blocked!r})\n")
    p = subprocess.run([sys.executable, str(REPO / "bench/pyclients/pyclient.py"), "--addr", "127.0.0.1:1",
                        "--dataset", "d", "--batch-size", "4", "--client", client],
                       capture_output=True, text=True, timeout=120,
                       env={"PYTHONPATH": f"{tmp_path}:{REPO / 'python'}", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 3, p.stdout + p.stderr
    err = json.loads(p.stdout.splitlines()[-1])["error"]
    assert f"{sys.executable} cannot import {blocked}" in err and want in err and "--python" in err, err
