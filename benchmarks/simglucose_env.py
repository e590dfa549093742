"""Create the isolated virtual environment that holds simglucose 0.2.11 for reference runs.

simglucose (Jinyu Xie, MIT) is the open Python port of the UVA/Padova T1D simulator. We only
use it to produce reference trajectories that our own simulator is checked against, so it
lives in its own venv and is never a runtime dependency of biowm.

simglucose 0.2.11 declares ``gym==0.9.4`` (and gymnasium, pathos, matplotlib), which we do
not need and which may not install on current Pythons. We therefore install it with
``--no-deps`` plus exactly what ``simglucose.patient.t1dpatient`` imports: numpy, scipy,
pandas and setuptools<81 (it calls ``pkg_resources``). Versions are pinned so that reference
fixtures can be regenerated bit-for-bit.

Usage: ``python3 benchmarks/simglucose_env.py`` prints the venv's python path.
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_VENV_DIR = BENCH_DIR / ".simglucose-venv"
SIMGLUCOSE_VERSION = "0.2.11"
# What simglucose.patient.t1dpatient actually imports, pinned for reproducible references.
RUNTIME_REQUIREMENTS: tuple[str, ...] = (
    "numpy==2.2.6",
    "scipy==1.16.3",
    "pandas==2.3.3",
    "setuptools==80.9.0",
)
SIMGLUCOSE_REQUIREMENT = f"simglucose=={SIMGLUCOSE_VERSION}"
STAMP_NAME = ".biowm-simglucose-installed"

# Imports the patient model without running simglucose/__init__.py, which imports gym.
# Mirrors simglucose_worker.import_simglucose (kept inline so the check needs no file path).
VERIFY_SNIPPET = """
import importlib.util, sys
spec = importlib.util.find_spec("simglucose")
sys.modules["simglucose"] = importlib.util.module_from_spec(spec)
from simglucose.patient.t1dpatient import Action, T1DPatient
p = T1DPatient.withName("adult#001")
p.step(Action(CHO=0.0, insulin=0.0))
assert p.t == 1, p.t
print("simglucose ok")
"""


def venv_python(venv_dir: Path) -> Path:
    """Return the path of the python executable inside ``venv_dir`` (POSIX or Windows)."""
    posix = venv_dir / "bin" / "python"
    return (
        posix if posix.exists() or sys.platform != "win32" else venv_dir / "Scripts" / "python.exe"
    )


def _stamp_text() -> str:
    """Describe the install so that changing a pin invalidates the stamp."""
    return "\n".join((SIMGLUCOSE_REQUIREMENT, *RUNTIME_REQUIREMENTS)) + "\n"


def _run(cmd: list[str]) -> None:
    """Run a command, echoing it to stderr, and fail loudly on a non-zero exit."""
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def verify_simglucose(python: Path) -> None:
    """Check that the patient model imports and steps once in the venv at ``python``."""
    out = subprocess.run(
        [str(python), "-W", "ignore", "-c", VERIFY_SNIPPET],
        check=True,
        capture_output=True,
        text=True,
    )
    if "simglucose ok" not in out.stdout:
        raise RuntimeError(f"simglucose check failed:\n{out.stdout}\n{out.stderr}")


def ensure_simglucose_python(venv_dir: Path = DEFAULT_VENV_DIR) -> Path:
    """Create ``venv_dir`` with simglucose installed if needed; return its python path.

    Idempotent: a stamp file recording the pinned requirements marks a finished install, so
    later calls only return the path.
    """
    venv_dir = Path(venv_dir)
    python = venv_python(venv_dir)
    stamp = venv_dir / STAMP_NAME
    if python.exists() and stamp.exists() and stamp.read_text() == _stamp_text():
        return python
    if not python.exists():
        print(f"creating {venv_dir}", file=sys.stderr, flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(venv_dir)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *RUNTIME_REQUIREMENTS])
    # --no-deps: skip gym==0.9.4, gymnasium, pathos and matplotlib, which the model never uses.
    _run([*pip, "--no-deps", SIMGLUCOSE_REQUIREMENT])
    verify_simglucose(python)
    stamp.write_text(_stamp_text())
    return python


if __name__ == "__main__":
    print(ensure_simglucose_python())
