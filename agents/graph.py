"""Graph builders and their registry: a strategy YAML's ``graph`` key names one of GRAPHS.

Every graph works on one window (``WindowInput``) and ends in a ``Prediction`` or raises
``StructuredOutputError`` after the allowed re-asks.
"""

from __future__ import annotations

from collections.abc import Callable

from langgraph.graph import END, START
from langgraph.graph.state import CompiledStateGraph

from vara.agents import agentic, classify, judge, nodes, vision
from vara.agents.context import Context
from vara.agents.state import WindowInput, WindowState
from vara.agents.steps import StepGraph
from vara.config import StrategyConfig
from vara.errors import ConfigError, did_you_mean
from vara.types import FramePlan

__all__ = [
    "GRAPHS",
    "PROMPT_ROLES",
    "SCHEMA_ROLES",
    "NEEDS_CLASSIFIER",
    "NO_VLM",
    "PIXELS_ONLY_ON_CACHE_MISS",
    "TOOL_CALLING",
    "build_caption_reason",
    "build_direct",
    "check_strategy",
    "get_graph",
]


def build_caption_reason() -> CompiledStateGraph:
    """sample -> caption (VLM) -> answer (LLM over captions) -> validate -> ..."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("caption", vision.caption)
    g.add_node("answer", nodes.answer_from_captions)
    g.add_edge(START, "sample")
    g.add_edge("sample", "caption")
    g.add_edge("caption", "answer")
    nodes.add_answer_loop(g)
    return g.compile(name="caption-reason")


def build_direct() -> CompiledStateGraph:
    """sample -> answer (VLM over frames) -> validate -> ..."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("answer", nodes.answer_from_frames)
    g.add_edge(START, "sample")
    g.add_edge("sample", "answer")
    nodes.add_answer_loop(g)
    return g.compile(name="direct")


def build_caption_judge() -> CompiledStateGraph:
    """sample -> caption (VLM) -> judge (one yes/no per class, each validated) -> finalize."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("caption", vision.caption)
    g.add_node("judge", judge.judge)
    g.add_node("finalize", nodes.finalize)
    g.add_edge(START, "sample")
    g.add_edge("sample", "caption")
    g.add_edge("caption", "judge")
    g.add_edge("judge", "finalize")
    g.add_edge("finalize", END)
    return g.compile(name="caption-judge")


def build_semantic_tokens() -> CompiledStateGraph:
    """sample -> tokens (VLM tags per frame) -> answer (LLM over the narrative) -> validate..."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("tokens", vision.tokens)
    g.add_node("answer", nodes.answer_from_tokens)
    g.add_edge(START, "sample")
    g.add_edge("sample", "tokens")
    g.add_edge("tokens", "answer")
    nodes.add_answer_loop(g)
    return g.compile(name="semantic-tokens")


def build_classifier() -> CompiledStateGraph:
    """sample -> classify (trained classifier) -> labels from its scores -> finalize."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("classify", classify.classify)
    g.add_node("decide", classify.from_scores)
    g.add_node("finalize", nodes.finalize)
    g.add_edge(START, "sample")
    g.add_edge("sample", "classify")
    g.add_edge("classify", "decide")
    g.add_edge("decide", "finalize")
    g.add_edge("finalize", END)
    return g.compile(name="classifier")


def build_classifier_explain() -> CompiledStateGraph:
    """sample -> classify -> caption (VLM) -> explain (LLM, labels fixed) -> finalize."""
    g = StepGraph(WindowState, context_schema=Context, input_schema=WindowInput)
    g.add_node("sample", nodes.sample)
    g.add_node("classify", classify.classify)
    g.add_node("caption", vision.caption)
    g.add_node("explain", classify.explain)
    g.add_node("finalize", nodes.finalize)
    g.add_edge(START, "sample")
    g.add_edge("sample", "classify")
    g.add_edge("classify", "caption")
    g.add_edge("caption", "explain")
    g.add_edge("explain", "finalize")
    g.add_edge("finalize", END)
    return g.compile(name="classifier-explain")


GRAPHS: dict[str, Callable[[], CompiledStateGraph]] = {
    "caption-reason": build_caption_reason,
    "direct": build_direct,
    "caption-judge": build_caption_judge,
    "semantic-tokens": build_semantic_tokens,
    "classifier": build_classifier,
    "classifier-explain": build_classifier_explain,
    "agentic": agentic.build_agentic,
}

# Roles whose prompt asks for structured output, so must name a schema file.
SCHEMA_ROLES = ("answer", "judge", "tokens", "explain")
# The prompt roles each graph renders; a strategy must name all of them.
PROMPT_ROLES: dict[str, tuple[str, ...]] = {
    "caption-reason": ("caption", "answer", "reask"),
    "direct": ("answer", "reask"),
    "caption-judge": ("caption", "judge", "reask"),
    "semantic-tokens": ("tokens", "answer", "reask"),
    "classifier": (),
    "classifier-explain": ("caption", "explain", "reask"),
    "agentic": ("caption", "agent", "answer", "reask"),
}
# Graphs that cannot run without a trained classifier (classifier.run_dir).
NEEDS_CLASSIFIER = ("classifier", "classifier-explain")
# Graphs that never ask a VLM, so a strategy may leave vlm unset.
NO_VLM = ("classifier",)
# Graphs whose LLM calls tools (OpenAI tools API): a vLLM server, not the in-process engine.
TOOL_CALLING = ("agentic",)
# Graphs that use a window's pixels only for cacheable VLM outputs, with the check telling
# whether all of a window's outputs are cached: then the runner does not decode its frames.
PIXELS_ONLY_ON_CACHE_MISS: dict[str, Callable[[Context, FramePlan], bool]] = {
    "caption-reason": vision.captions_cached,
    "caption-judge": vision.captions_cached,
    "semantic-tokens": vision.tokens_cached,
}


def check_strategy(config: StrategyConfig, source: str) -> None:
    """The strategy names a known graph and a prompt for every role that graph renders."""
    if config.graph not in GRAPHS:
        raise ConfigError(
            f"strategy {source}: unknown graph {config.graph!r}"
            f"{did_you_mean(config.graph, GRAPHS)}; known: {sorted(GRAPHS)}"
        )
    roles = PROMPT_ROLES[config.graph]
    missing = [r for r in roles if r not in config.prompts]
    if missing:
        raise ConfigError(
            f"strategy {source}: graph {config.graph!r} needs prompts for roles {missing}"
        )
    unused = sorted(set(config.prompts) - set(roles))
    if unused:  # a typo'd role would leave the old prompt in use, and the run would list both
        raise ConfigError(
            f"strategy {source}: graph {config.graph!r} has no prompt role {unused}; its roles "
            f"are {list(roles)}"
        )
    if config.graph not in NO_VLM and not config.vlm.is_set:
        raise ConfigError(
            f"strategy {source}: graph {config.graph!r} asks a VLM: set vlm.model or vlm.url"
        )


def get_graph(key: str) -> CompiledStateGraph:
    if key not in GRAPHS:
        raise ConfigError(
            f"unknown graph {key!r}{did_you_mean(key, GRAPHS)}; known: {sorted(GRAPHS)}"
        )
    return GRAPHS[key]()
