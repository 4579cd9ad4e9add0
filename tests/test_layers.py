"""The import contracts of pyproject.toml (DESIGN.md's layers) hold, and would catch a break.

import-linter reads packages from disk, but the editable install maps ``vara.tools`` to
``tools/`` with an import hook it cannot follow, so the tree is staged as the wheel lays it
out (``vara/tools/...``) in a temporary folder and checked there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _stage(dst: Path) -> Path:
    """Copy the sources to ``dst`` in their installed layout, with pyproject.toml beside."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping = config["tool"]["setuptools"]["package-dir"]
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package, folder in sorted(mapping.items(), key=lambda kv: kv[0].count(".")):
        target = dst.joinpath(*package.split("."))
        shutil.copytree(ROOT / folder, target, ignore=skip, dirs_exist_ok=True)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def _lint(stage: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=stage,
        env={"PYTHONPATH": str(stage), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    if not LINT.exists():
        pytest.skip(f"import-linter is not installed beside {sys.executable} (vara[test])")
    return _stage(tmp_path / "stage")


def test_the_tree_keeps_every_contract(stage):
    proc = _lint(stage)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize(
    "where, line, broken",
    [
        ("tools/probe_upward.py", "import vara.eval.runner", "vara.tools is not allowed"),
        ("finetune/probe_upward.py", "from vara.eval import report", "vara.finetune is not"),
        ("finetune/probe_agents.py", "import vara.agents.graph", "never agents"),
        ("types.py", "import vara.tools.video", "vara.types is not allowed"),
        ("tools/probe_graph.py", "import langgraph", "only agents import langgraph"),
        ("eval/probe_ray.py", "import ray", "vara.eval is not allowed to import ray"),
    ],
)
def test_an_upward_import_breaks_a_contract(stage, where, line, broken):
    path = stage / "vara" / where  # a new module, or an existing one with one more line
    path.write_text((path.read_text() if path.exists() else '"""A layering break."""\n') + line)
    proc = _lint(stage)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert broken in proc.stdout, proc.stdout[-3000:]
