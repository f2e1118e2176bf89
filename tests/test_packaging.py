"""Packaging and layering facts that CI relies on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]

# conda-forge name -> PyPI name, where they differ
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "tblite-python": "tblite",
    "py3dmol": "py3Dmol",
    "distributed": "dask",
    "openmm-ml": "openmmml",
}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)$", req)
    assert m, req
    return m.group(1), m.group(3).replace(" ", "")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = dict(_split(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda: dict[str, str] = {}
    for item in env["dependencies"]:
        if isinstance(item, dict):
            for req in item["pip"]:
                name, spec = _split(req)
                conda[name] = spec
        elif item not in ("pip",) and not item.startswith("python"):
            name, spec = _split(item)
            conda[CONDA_TO_PYPI.get(name, name)] = spec
    assert {k.lower() for k in conda} == {k.lower() for k in pypi}
    lowered = {k.lower(): v for k, v in pypi.items()}
    for name, spec in conda.items():
        assert spec == lowered[name.lower()], f"{name}: environment.yml {spec!r} vs pyproject {lowered[name.lower()]!r}"
    assert pypi["torch"] == "==2.13.0"
    assert pypi["openmm"].startswith(">=8.5")


def test_importing_the_core_stays_light():
    code = (
        "import sys, workbench, workbench.chem, workbench.data, workbench.errors\n"
        "workbench.Molecule('CCO').qed\n"
        "heavy = [m for m in ('torch', 'openmm', 'jax', 'diffusers', 'pandas') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [ln.strip() for ln in ci.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert commands[-1] == "exec make test"
    assert "make test" in (ROOT / "README.md").read_text()


def test_console_script_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["workbench"] == "workbench.cli:app"


def test_cli_validate(tmp_path):
    smi = tmp_path / "a.smi"
    smi.write_text("CCO ethanol\nC1CC broken\n")
    ok = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "validate", "c1ccccc1O"], capture_output=True, text=True, cwd=ROOT
    )
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "validate", "--json", str(smi)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    assert '"ok": true' in bad.stdout and "unclosed" in bad.stdout.lower() or "ring" in bad.stdout.lower()
