"""Strategy files: packaged ones validate; overrides apply; mistakes name the field."""

from __future__ import annotations

import pytest

from vara.agents.strategies import list_strategies, load_strategy
from vara.config import apply_overrides
from vara.errors import ConfigError


def test_every_packaged_strategy_loads():
    names = list_strategies()
    assert {"caption-reason", "direct"} <= set(names)
    for name in names:
        s = load_strategy(name)
        assert s.name == name  # the file stem is the registry key


def test_overrides_reach_nested_fields_and_parse_yaml_values():
    s = load_strategy(
        "caption-reason",
        [
            "sampler.n_frames=16",
            "vlm.url=http://127.0.0.1:9/v1",
            "vlm.model=null",
            "llm={model: m, url: null}",
        ],
    )
    assert s.sampler.n_frames == 16
    assert s.vlm.url == "http://127.0.0.1:9/v1" and s.vlm.model is None
    assert s.llm is not None and s.llm.model == "m"


@pytest.mark.parametrize(
    "override, message",
    [
        ("sampler.n_frame=3", r"sampler: Additional .* \(did you mean 'n_frames'\?\)"),
        ("windows.overlap=1.5", "windows.overlap"),
        # the schema's graph enum is the registry's keys
        ("graph=nope", r"graph: 'nope' is not one of \[.*'caption-reason'"),
        ("graph=caption_judge", r"'caption_judge' is not one .*\(did you mean 'caption-judge'\?\)"),
        ("scorer.kind=rundir", r"scorer.kind: 'rundir' is not .*\(did you mean 'run-dir'\?\)"),
        ("pixels.perturb=[blurr]", r"pixel step 'blurr': unknown step 'blurr'"),
        ("vlm.url=localhost:8000", "vlm.url"),
        ("sampler.fps=2", "exactly one of n_frames or fps"),
        ("prompts.caption=Caption V1", "prompts.caption"),
        # a typo'd role would leave reason.v1 answering while the run lists reason.v2 too
        (
            "prompts.reason=reason.v2",
            r"has no prompt role \['reason'\]; its roles are \['caption', 'answer', 'reask'\]",
        ),
    ],
)
def test_bad_fields_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_strategy("caption-reason", [override])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key.sub=value"):
        apply_overrides({}, ["sampler.n_frames"])
    with pytest.raises(ConfigError, match="is not a mapping"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_unknown_strategy_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="'nope' not found; packaged: .*caption-reason"):
        load_strategy("nope")
    with pytest.raises(ConfigError, match=r"not found \(did you mean 'caption-judge'\?\)"):
        load_strategy("caption-jugde")
    with pytest.raises(ConfigError, match="not found"):
        load_strategy(tmp_path / "missing.yaml")
