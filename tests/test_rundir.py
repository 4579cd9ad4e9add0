"""The out dir's fingerprint: an out dir written before the fingerprint named the pixel steps
and the scorer role (format 1) still resumes when nothing really changed, and is refused,
naming the setting, when something did."""

from __future__ import annotations

import json

import pytest

from vara.agents.rundir import FORMAT, RunDir
from vara.errors import ConfigError
from vara.records import write_json_atomic
from vara.types import PixelSpec

STRATEGY = {"name": "s", "graph": "g", "sampler": {"n_frames": 8, "max_side": 448}}


def _now(models: dict[str, str], max_side: int = 448) -> dict:
    strategy = {**STRATEGY, "sampler": {"n_frames": 8, "max_side": max_side}}
    return {
        "format": FORMAT,
        "strategy": strategy,
        "labelset": {"name": "l"},
        "prompts": [],
        "models": models,
        "pixels": PixelSpec.resize_only(max_side).canonical,
    }


def _old_out_dir(tmp_path, models: dict[str, str]):
    old = {"strategy": STRATEGY, "labelset": {"name": "l"}, "prompts": [], "models": models}
    write_json_atomic(tmp_path / "run.json", {"run_info": {"fingerprint": old, "sessions": []}})
    return tmp_path


@pytest.mark.parametrize(
    "old_models, new_models",
    [
        ({"vlm": "v", "llm": "l"}, {"vlm": "v", "llm": "l"}),  # caption-reason
        ({"vlm": "v", "llm": "v"}, {"vlm": "v"}),  # direct listed its VLM as the LLM too
        ({"classifier": "vlm-lora:run@1"}, {"scorer": "vlm-lora:run@1"}),  # the role's new name
    ],
)
def test_a_format_1_out_dir_resumes(tmp_path, old_models, new_models):
    RunDir(_old_out_dir(tmp_path, old_models), _now(new_models))


def test_a_format_1_out_dir_with_other_settings_is_refused_naming_them(tmp_path):
    out = _old_out_dir(tmp_path, {"vlm": "v", "llm": "v"})
    with pytest.raises(ConfigError, match=r"differ: pixels, strategy\.sampler\.max_side; "):
        RunDir(out, _now({"vlm": "v"}, max_side=224))
    with pytest.raises(ConfigError, match=r"differ: models\.vlm; "):
        RunDir(out, _now({"vlm": "w"}))


def test_a_current_out_dir_compares_as_written(tmp_path):
    fp = _now({"vlm": "v"})
    write_json_atomic(
        tmp_path / "run.json", {"run_info": {"fingerprint": json.loads(json.dumps(fp))}}
    )
    RunDir(tmp_path, fp)
    with pytest.raises(ConfigError, match=r"differ: pixels; "):
        RunDir(tmp_path, {**fp, "pixels": "resize(max_side=448)|blur(sigma=1)"})
