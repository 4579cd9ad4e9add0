"""The graph seam: a new graph is one GraphSpec entry (plus its node and a strategy YAML), and
``vara eval`` runs it end to end; a spec that is incomplete or inconsistent fails at import,
naming the field.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.graphspec import FINALIZE, GraphSpec, GraphSpecError, linear_graph
from vara.agents.registry import GRAPHS, register
from vara.agents.state import WindowState
from vara.cli import main as cli
from vara.records import read_jsonl
from vara.testing import write_test_video
from vara.tools.reason import Answer, time_ref
from vara.tools.video import read_frames
from vara.types import Evidence, PixelSpec

LIGHT = """\
name: light
description: How bright the picture is.
multi_label: false
labels:
  - {name: bright, description: mean grey level of the frames at least half of white}
  - {name: dark, description: mean grey level below half of white}
"""
TOY = """\
# vara eval MANIFEST --labels light.yaml --strategy toy.yaml --out DIR
name: toy
graph: toy-brightness
description: Labels a window by the mean grey level of its frames.
prompts: {}
sampler:
  n_frames: 2
  max_side: 32
vlm:
  model: null
"""


def brightness(state: WindowState, runtime: Runtime[Context]) -> dict:
    """The toy graph's one step: bright or dark, from the frames the window's plan decoded."""
    batch = runtime.context.frames.get(state["clip"])
    level = float(batch.frames.mean()) / 255
    label = "bright" if level >= 0.5 else "dark"
    cited = Evidence("frame", time_ref(batch.timestamps_s[0]), f"mean level {level:.3f}")
    answer = Answer(labels=(label,), evidence=(cited,), explanation=f"mean level {level:.3f}")
    return {"answer": answer, "raw": json.dumps({"level": level})}


TOY_SPEC = GraphSpec(
    key="toy-brightness",
    description="the mean grey level of the frames says bright or dark",
    build=linear_graph("toy-brightness", [("brightness", brightness)], then=FINALIZE),
    prompt_roles=(),
    structured_roles=(),
    vlm=False,
    llm=False,
    scorer="none",
    tool_calling=False,
    cache_check=None,
)


@pytest.fixture
def toy_graph():
    register(TOY_SPEC)
    yield TOY_SPEC
    del GRAPHS[TOY_SPEC.key]


def test_a_registered_linear_graph_runs_end_to_end_in_vara_eval(toy_graph, tmp_path, capsys):
    rows = [("video", "start_s", "end_s", "labels")]
    for seed, name in enumerate(("a.mp4", "b.mp4")):
        write_test_video(tmp_path / name, n_frames=75, fps=25.0, seed=seed)
        rows.append((name, "", "", "bright"))
    with open(tmp_path / "clips.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    (tmp_path / "light.yaml").write_text(LIGHT)
    (tmp_path / "toy.yaml").write_text(TOY)
    out = tmp_path / "out"
    args = ["eval", str(tmp_path / "clips.csv"), "--labels", str(tmp_path / "light.yaml")]
    status = cli([*args, "--strategy", str(tmp_path / "toy.yaml"), "--out", str(out)])
    assert status == 0, capsys.readouterr().err
    results = json.loads((out / "toy" / "results.json").read_text())
    assert results["run_info"]["counts"]["n_predictions"] == 2
    assert results["metrics"]["hallucination_rate"] is None  # no model wrote an answer
    preds = read_jsonl(out / "toy" / "predictions.jsonl")
    assert len(preds) == 2
    for p in preds:  # the labels are what the frames say, decoded independently here
        frames, _ = read_frames(p["video"], _plan(p["video"]), pixels=PixelSpec.resize_only(32))
        level = float(frames.mean()) / 255
        assert p["labels"] == ["bright" if level >= 0.5 else "dark"], level
        assert p["strategy"] == "toy" and p["models"] == {}
        assert p["pixels"] == PixelSpec.resize_only(32).sha256


def _plan(video: str) -> tuple[int, ...]:
    from vara.tools.video import probe
    from vara.tools.windows import plan_frames
    from vara.types import Clip, SamplerSpec

    info = probe(video)
    clip = Clip("c", video, 0.0, info.duration_s)
    return plan_frames(info, clip, SamplerSpec(n_frames=2, max_side=32))


def test_the_graph_enum_of_the_strategy_schema_is_the_registry(toy_graph):
    from vara.agents.strategies import strategy_schema

    assert strategy_schema()["properties"]["graph"]["enum"] == sorted(GRAPHS)
    assert "toy-brightness" in GRAPHS


def _import(tmp_path: Path, source: str):
    path = tmp_path / "my_graphs.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("my_graphs", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop("my_graphs", None)
    return module


MODULE = """\
from vara.agents.graphspec import GraphSpec
from vara.agents.registry import register

register(GraphSpec(
    key="half-done",
    description="a graph whose spec forgot a field",
    build=lambda: None,
    prompt_roles=("caption", "answer", "reask"),
    structured_roles=("answer",),
{fields}
))
"""
COMPLETE = {
    "vlm": "True",
    "llm": "True",
    "scorer": '"none"',
    "tool_calling": "False",
    "cache_check": "None",
}


def _fields(**changed: str) -> str:
    items = {**COMPLETE, **changed}
    return "\n".join(f"    {k}={v}," for k, v in items.items() if v is not None)


def test_an_incomplete_spec_fails_at_import_naming_the_missing_field(tmp_path):
    with pytest.raises(GraphSpecError, match=r"'half-done' misses field\(s\) — vlm: whether"):
        _import(tmp_path, MODULE.format(fields=_fields(vlm=None)))
    assert "half-done" not in GRAPHS


@pytest.mark.parametrize(
    "changed, message",
    [
        ({"tool_calling": "True", "llm": "False"}, "tool_calling needs llm=True"),
        ({"scorer": '"maybe"'}, "scorer must be one of"),
        ({"vlm": "False", "cache_check": "lambda ctx, plan: True"}, "cache_check is for VLM"),
        ({"vlm": "1"}, "vlm must be True or False"),
    ],
)
def test_an_inconsistent_spec_fails_at_import_naming_the_field(tmp_path, changed, message):
    with pytest.raises(GraphSpecError, match=message):
        _import(tmp_path, MODULE.format(fields=_fields(**changed)))
    assert "half-done" not in GRAPHS


def test_a_complete_module_registers_and_the_roles_are_checked(tmp_path):
    try:
        _import(tmp_path, MODULE.format(fields=_fields()))
        assert GRAPHS["half-done"].writes_answers
    finally:
        GRAPHS.pop("half-done", None)
    bad = MODULE.format(fields=_fields()).replace('("answer",)', '("judge",)')
    with pytest.raises(GraphSpecError, match=r"structured_roles \['judge'\] are not among"):
        _import(tmp_path, bad)
    no_reask = MODULE.format(fields=_fields()).replace(', "reask")', ")")
    with pytest.raises(GraphSpecError, match="prompt_roles lacks 'reask'"):
        _import(tmp_path, no_reask)


def test_every_packaged_strategy_names_a_registered_graph():
    from vara.agents.strategies import list_strategies, load_strategy

    for name in list_strategies():
        assert load_strategy(name).graph in GRAPHS


def test_linear_graph_with_an_answer_loop_needs_an_answer_step():
    with pytest.raises(GraphSpecError, match="needs a last step 'answer'"):
        linear_graph("x", [("caption", brightness)], then="answer_loop")
