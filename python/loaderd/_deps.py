"""The package's two dependencies, imported first so that a broken install
fails with what to do rather than deep inside pyarrow."""

from __future__ import annotations

import sys

# pyarrow 26 and later refuse numpy 1 at import without declaring it in their
# metadata (14-15 declare numpy<2; 16-25 take either), so pip pairs the newest
# pyarrow with a numpy 1 it finds.
_PIN = "pip install 'pyarrow>=14,<26'"


def check() -> None:
    """Imports numpy and pyarrow; raises ImportError saying how to install
    them when either cannot be imported."""
    try:
        import numpy
    except ImportError as e:
        raise ImportError(
            f"loaderd needs numpy, which {sys.executable} cannot import ({e}); "
            "`pip install ./python` installs loaderd with pyarrow and numpy") from e
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        if e.name == "pyarrow":
            raise ImportError(
                f"loaderd needs pyarrow >= 14, which {sys.executable} cannot import ({e}); "
                "`pip install ./python` installs loaderd with pyarrow and numpy") from e
        if "numpy" in str(e).lower():
            raise ImportError(_mismatch(e, numpy.__version__)) from e
        raise


def _mismatch(e: ImportError, numpy_version: str) -> str:
    """What to do when pyarrow refuses the numpy installed."""
    try:
        from importlib.metadata import version
        have = f"pyarrow {version('pyarrow')}"
    except Exception:  # metadata missing: say it without the version
        have = "pyarrow"
    says = f"loaderd needs pyarrow, and {have} cannot be imported beside numpy {numpy_version} ({e})"
    if int(numpy_version.split(".")[0]) < 2:
        return (f"{says}. pyarrow 26 and later need numpy 2; to keep numpy 1 (a distribution's, "
                "or one a torch built against numpy 1 needs, such as Debian's python3-torch): "
                f"{_PIN}; else upgrade numpy: pip install 'numpy>=2' (a torch older than 2.3 "
                "then fails)")
    return f"{says}. pyarrow 14 and 15 need numpy 1: pip install 'pyarrow>=16'"
