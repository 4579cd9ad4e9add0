"""The model pool: each graph gets the models its GraphSpec asks for, each endpoint is
connected once for every strategy, and a required scorer that is not configured is named.

Endpoints carry a model name and point at a closed port: a client that is never asked
anything never connects, so these need no server.
"""

from __future__ import annotations

import pytest

from vara.agents.models import ModelPool
from vara.agents.registry import graph_spec
from vara.agents.strategies import load_strategy
from vara.errors import ConfigError
from vara.prompts.loader import load_labelset
from vara.testing import ScriptedChatModel

LABELS = load_labelset("kinetics-sample")
VLM = ["vlm.url=http://127.0.0.1:9/v1", "vlm.model=v"]
LLM = ["llm={url: 'http://127.0.0.1:9/v1', model: l}"]


def _models(pool: ModelPool, name: str, overrides=()):
    strategy = load_strategy(name, [*VLM, *overrides])
    return pool.models_for(strategy, graph_spec(strategy.graph), LABELS)


def test_the_llm_is_the_vlm_unless_one_is_set_and_a_direct_graph_asks_none():
    pool = ModelPool()
    reason = _models(pool, "caption-reason")
    assert reason.llm is reason.vlm and reason.vlm.model_id == "v"
    separate = _models(pool, "caption-reason", LLM)
    assert separate.llm.model_id == "l" and separate.vlm is reason.vlm  # connected once
    direct = _models(pool, "direct", LLM)
    assert direct.vlm is reason.vlm and direct.llm is None and direct.scorer is None


def test_given_models_replace_the_strategy_endpoints():
    vlm, llm = ScriptedChatModel([], "given-vlm"), ScriptedChatModel([], "given-llm")
    models = _models(ModelPool(vlm=vlm, llm=llm), "caption-judge", LLM)
    assert models.vlm is vlm and models.llm is llm


def test_a_required_scorer_must_be_configured_an_optional_one_may_be_absent():
    with pytest.raises(ConfigError, match=r"needs a scorer: set scorer\.run_dir=RUN_DIR"):
        _models(ModelPool(), "classifier")
    assert _models(ModelPool(), "agentic").scorer is None


def test_tool_calling_needs_a_served_llm(tmp_path):
    from vara.testing import build_tiny_vlm

    local = build_tiny_vlm(tmp_path / "m")
    strategy = load_strategy("agentic", [f"vlm.model={local}"])
    with pytest.raises(ConfigError, match="calls tools, which needs the LLM on a vLLM server"):
        ModelPool().models_for(strategy, graph_spec("agentic"), LABELS)
