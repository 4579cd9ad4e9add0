"""The graph registry: every strategy graph vara knows, one ``GraphSpec`` each.

A strategy YAML's ``graph:`` names a key here. Adding a graph is one ``register(GraphSpec(...))``
(here, or in your own module before the run) plus its node functions and prompts; nothing
else keeps a table of graphs. ``check_strategy`` holds a strategy against its graph's spec.
"""

from __future__ import annotations

import logging

from langgraph.graph.state import CompiledStateGraph

from vara.agents import agentic, classify, judge, nodes, vision
from vara.agents.graphspec import ANSWER_LOOP, FINALIZE, GraphSpec, linear_graph
from vara.config import StrategyConfig
from vara.errors import ConfigError, did_you_mean
from vara.tools.pixels import pixel_spec
from vara.tools.scorer import configured, scorer_kind

__all__ = ["GRAPHS", "build_graph", "check_strategy", "graph_spec", "register"]

log = logging.getLogger(__name__)

GRAPHS: dict[str, GraphSpec] = {}


def register(spec: GraphSpec) -> GraphSpec:
    """Add ``spec`` to the registry; its key must be new."""
    if not isinstance(spec, GraphSpec):
        raise TypeError(f"register() takes a GraphSpec, got {type(spec).__name__}")
    if spec.key in GRAPHS:
        raise ValueError(f"graph {spec.key!r} is already registered")
    GRAPHS[spec.key] = spec
    return spec


def graph_spec(key: str) -> GraphSpec:
    if key not in GRAPHS:
        raise ConfigError(
            f"unknown graph {key!r}{did_you_mean(key, GRAPHS)}; known: {sorted(GRAPHS)}"
        )
    return GRAPHS[key]


def build_graph(key: str) -> CompiledStateGraph:
    return graph_spec(key).build()


register(
    GraphSpec(
        key="caption-reason",
        description="VLM caption(s) of the frames -> LLM labels under the answer schema",
        build=linear_graph(
            "caption-reason",
            [("caption", vision.caption), ("answer", nodes.answer_from_captions)],
            then=ANSWER_LOOP,
        ),
        prompt_roles=("caption", "answer", "reask"),
        structured_roles=("answer",),
        vlm=True,
        llm=True,
        scorer="none",
        tool_calling=False,
        cache_check=vision.captions_cached,
    )
)


register(
    GraphSpec(
        key="direct",
        description="the VLM labels the frames under the answer schema",
        build=linear_graph(
            "direct",
            [("answer", nodes.answer_from_frames)],
            then=ANSWER_LOOP,
        ),
        prompt_roles=("answer", "reask"),
        structured_roles=("answer",),
        vlm=True,
        llm=False,
        scorer="none",
        tool_calling=False,
        cache_check=None,
    )
)


register(
    GraphSpec(
        key="caption-judge",
        description="captions -> one schema-constrained yes/no judgement per class",
        build=linear_graph(
            "caption-judge",
            [("caption", vision.caption), ("judge", judge.judge)],
            then=FINALIZE,
        ),
        prompt_roles=("caption", "judge", "reask"),
        structured_roles=("judge",),
        vlm=True,
        llm=True,
        scorer="none",
        tool_calling=False,
        cache_check=vision.captions_cached,
    )
)


register(
    GraphSpec(
        key="semantic-tokens",
        description="VLM tags per frame -> the action narrative -> LLM labels",
        build=linear_graph(
            "semantic-tokens",
            [("tokens", vision.tokens), ("answer", nodes.answer_from_tokens)],
            then=ANSWER_LOOP,
        ),
        prompt_roles=("tokens", "answer", "reask"),
        structured_roles=("tokens", "answer"),
        vlm=True,
        llm=True,
        scorer="none",
        tool_calling=False,
        cache_check=vision.tokens_cached,
    )
)


register(
    GraphSpec(
        key="classifier",
        description="a scorer (trained classifier) labels the window from its scores",
        build=linear_graph(
            "classifier",
            [("classify", classify.classify), ("decide", classify.from_scores)],
            then=FINALIZE,
        ),
        prompt_roles=(),
        structured_roles=(),
        vlm=False,
        llm=False,
        scorer="required",
        tool_calling=False,
        cache_check=None,
    )
)


register(
    GraphSpec(
        key="classifier-explain",
        description="scorer labels; an LLM explains them from VLM captions and the scores",
        build=linear_graph(
            "classifier-explain",
            [
                ("classify", classify.classify),
                ("caption", vision.caption),
                ("explain", classify.explain),
            ],
            then=FINALIZE,
        ),
        prompt_roles=("caption", "explain", "reask"),
        structured_roles=("explain",),
        vlm=True,
        llm=True,
        scorer="required",
        tool_calling=False,
        cache_check=None,
    )
)


register(
    GraphSpec(
        key="agentic",
        description="an LLM calls classify / look_again / ask_vlm tools, then answers the schema",
        build=agentic.build_agentic,
        prompt_roles=("caption", "agent", "answer", "reask"),
        structured_roles=("answer",),
        vlm=True,
        llm=True,
        scorer="optional",
        tool_calling=True,
        cache_check=None,
    )
)


def check_strategy(config: StrategyConfig, source: str) -> None:
    """The strategy names a known graph, a prompt for every role that graph renders (and
    none it does not), the VLM if it asks one, a known scorer kind, and valid pixel steps."""
    spec = graph_spec(config.graph)
    roles = spec.prompt_roles
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
    if spec.vlm and not config.vlm.is_set:
        raise ConfigError(
            f"strategy {source}: graph {config.graph!r} asks a VLM: set vlm.model or vlm.url"
        )
    kind = scorer_kind(config.scorer)  # a scorer a graph requires is checked when it runs
    if spec.scorer == "none" and configured(config.scorer):
        log.warning(
            "strategy %s: graph %r uses no scorer; scorer.%s is ignored",
            source,
            config.graph,
            kind.source,
        )
    pixel_spec(config.sampler.max_side, config.pixels.perturb)  # raises on an unknown step
