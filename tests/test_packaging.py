"""The wheel installs ONE top-level package, ``vara``, with every subpackage and data file;
and the source tree keeps the one-way import rules of DESIGN.md."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NOT_SOURCES = (".git", ".venv", "build", "dist", "runs", "models", "*.egg-info", "__pycache__")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path_factory.mktemp("src") / "vara"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*_NOT_SOURCES))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(src),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("vara-*.whl")
    return zipfile.ZipFile(whl)


def test_only_top_level_package_is_vara(wheel):
    tops = {n.split("/")[0] for n in wheel.namelist() if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"vara"}


def test_wheel_holds_subpackages_prompts_and_strategies(wheel):
    names = set(wheel.namelist())
    for pkg in ("agents", "tools", "prompts", "finetune", "eval"):
        assert f"vara/{pkg}/__init__.py" in names
    for f in (
        "caption.v1.yaml",
        "reason.v1.yaml",
        "direct.v1.yaml",
        "reask.v1.yaml",
        "answer.v1.schema.json",
        "labelsets/newborn-resuscitation.yaml",
        "labelsets/kinetics-sample.yaml",
    ):
        assert f"vara/prompts/{f}" in names
    assert "vara/agents/strategies/caption-reason.yaml" in names
    assert "vara/strategy.schema.json" in names
    for data in (
        "prompts/*.yaml",
        "prompts/*.json",
        "agents/strategies/*.yaml",
        "finetune/configs/*.yaml",
        "eval/review_assets/*",  # the review page's script and style
    ):
        for src in ROOT.glob(data):
            pkg = data.split("/")[0]
            assert f"vara/{pkg}/{src.relative_to(ROOT / pkg).as_posix()}" in names, src
    # Every packaged source file is in the wheel (an unlisted subpackage would be missing).
    for pkg in ("agents", "tools", "prompts", "finetune", "eval"):
        for src in (ROOT / pkg).glob("*.py"):
            assert f"vara/{pkg}/{src.name}" in names, src
    for src in (ROOT / "vara").rglob("*.py"):  # the core and its subpackages (vara.testing)
        assert f"vara/{src.relative_to(ROOT / 'vara').as_posix()}" in names, src
    entry = wheel.read([n for n in names if n.endswith("entry_points.txt")][0]).decode()
    assert "vara = vara.cli:main" in entry


# The layers themselves are import-linter contracts (pyproject.toml, tests/test_layers.py);
# this checks what import-linter does not: imports are absolute and rooted at vara.
def _vara_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; use absolute vara.* imports")
        names = (
            [node.module]
            if isinstance(node, ast.ImportFrom)
            else ([a.name for a in node.names] if isinstance(node, ast.Import) else [])
        )
        for name in names:
            parts = (name or "").split(".")
            if parts[0] in {"tools", "agents", "eval", "prompts", "finetune"}:
                raise AssertionError(f"{path}: bare import {name!r}; use vara.{name}")
            if parts[0] == "vara" and len(parts) > 1:
                mods.add(parts[1])
    return mods


@pytest.mark.parametrize("folder", ["vara", "agents", "tools", "prompts", "finetune", "eval"])
def test_imports_are_absolute_and_rooted_at_vara(folder):
    for src in (ROOT / folder).rglob("*.py"):
        _vara_imports(src)  # raises on a relative or bare import
