"""LangGraph Studio / ``langgraph dev`` entry points: one factory per strategy graph, listed
in the repository's ``langgraph.json``.

Each factory builds its graph (``registry.build_graph``) with a context that a JSON client
can set: ``StudioSettings`` (the label set and strategy overrides; Studio shows it as the
run's context form). The nodes read the ``Context`` those settings build (the packaged
strategy of the graph's name, models chosen but not loaded): a settings object hands every
other attribute to it. The default settings are bound, so the graph also runs without
``context=``: ``graph.invoke({"clip": clip})``; a clip may be given as JSON (``Clip``'s
fields), as Studio sends it. Nothing happens at import; a factory starts no server and
loads no weights (a model loads on the first request that needs it, as in ``vara run``).

Defaults for the settings come from two environment variables, read when a factory is
called:

    VARA_STUDIO_LABELS   label set (name or YAML path; default kinetics-sample)
    VARA_STUDIO_SET      strategy overrides, ';'-separated key=value, e.g.
                         "vlm.url=http://127.0.0.1:8000/v1;scorer.run_dir=runs/cls"

A graph whose default strategy cannot be built so (``classifier`` without
``scorer.run_dir``, ``agentic`` without a served LLM) gets no default, with a warning naming
the setting: Studio still draws it, and a run sets ``set`` in its context.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass, field

from langgraph._internal._constants import CONFIG_KEY_RUNTIME
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

from vara.agents.context import Context
from vara.agents.models import ModelPool
from vara.agents.registry import build_graph, graph_spec
from vara.agents.strategies import load_strategy
from vara.agents.window_loop import build_context
from vara.errors import VaraError
from vara.prompts.loader import load_labelset

__all__ = [
    "agentic",
    "caption_judge",
    "caption_reason",
    "classifier",
    "classifier_explain",
    "default_context",
    "direct",
    "semantic_tokens",
    "StudioSettings",
    "studio_graph",
]

log = logging.getLogger(__name__)

DEFAULT_LABELS = "kinetics-sample"
ENV_LABELS, ENV_SET = "VARA_STUDIO_LABELS", "VARA_STUDIO_SET"


def default_context(key: str, overrides: list[str] | None = None, labels: str | None = None):
    """The Context a ``vara run`` of the packaged strategy ``key`` would build (strategy
    overrides and label set from the arguments, else from the environment)."""
    if overrides is None:
        overrides = _env_overrides()
    strategy = load_strategy(key, _served(overrides))
    labelset = load_labelset(labels or os.environ.get(ENV_LABELS) or DEFAULT_LABELS)
    return build_context(strategy, graph_spec(strategy.graph), labelset, None, ModelPool(), None)


@functools.lru_cache(maxsize=16)
def _built(key: str, labels: str, overrides: tuple[str, ...]) -> Context:
    return default_context(key, list(overrides), labels or None)


@dataclass(frozen=True)
class StudioSettings:
    """A graph's context as JSON: ``graph`` (its key), ``labels`` (a label set; "" = the
    environment's or kinetics-sample), ``set`` (strategy overrides key=value; empty = the
    environment's). Any other attribute is the built ``Context``'s, so nodes use it as one."""

    graph: str = ""
    labels: str = ""
    set: tuple[str, ...] = field(default=())

    def context(self) -> Context:
        overrides = tuple(self.set) if self.set else None
        if overrides is None:
            return _built(self.graph, self.labels, tuple(_env_overrides()))
        return _built(self.graph, self.labels, overrides)

    def __getattr__(self, name: str):  # only names that are not fields: strategy, frames, ...
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.context(), name)


def _served(overrides: list[str]) -> list[str]:
    """As with `--vlm-url`: a server URL given without a model name uses the server's one
    model (the packaged strategy's hub id would not be what it serves)."""
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    roles = [r for r in ("vlm", "llm") if f"{r}.url" in keys and f"{r}.model" not in keys]
    return [*overrides, *(f"{r}.model=null" for r in roles)]


def _env_overrides() -> list[str]:
    return [o.strip() for o in os.environ.get(ENV_SET, "").split(";") if o.strip()]


def settings_class(key: str) -> type[StudioSettings]:
    """StudioSettings whose ``graph`` defaults to ``key`` (a JSON ``{}`` builds its own)."""

    @dataclass(frozen=True)
    class Settings(StudioSettings):
        graph: str = key

    Settings.__name__ = Settings.__qualname__ = "StudioSettings_" + key.replace("-", "_")
    return Settings


def with_context(graph: CompiledStateGraph, ctx: object) -> CompiledStateGraph:
    """``graph`` with ``ctx`` as the context of a run that passes none (a run's own
    ``context=`` still wins: langgraph merges the runtime it is given over this one)."""
    return graph.with_config(configurable={CONFIG_KEY_RUNTIME: Runtime(context=ctx)})


def studio_graph(key: str) -> CompiledStateGraph:
    """The compiled graph ``key``, its context StudioSettings, the default bound where it
    can be built."""
    settings = settings_class(key)
    graph = build_graph(key).copy(update={"context_schema": settings})
    try:
        settings().context()  # built now, so a setting it lacks is said at once
    except VaraError as exc:
        log.warning(
            "graph %s: no default context (%s); set %s, e.g. %s=%r, or `set` in a run's context",
            key,
            exc,
            ENV_SET,
            ENV_SET,
            "scorer.run_dir=RUN_DIR;vlm.url=http://127.0.0.1:8000/v1",
        )
        return graph
    return with_context(graph, settings())


# One factory per registered graph (langgraph.json names them; a test checks they match).
def caption_reason() -> CompiledStateGraph:
    return studio_graph("caption-reason")


def direct() -> CompiledStateGraph:
    return studio_graph("direct")


def caption_judge() -> CompiledStateGraph:
    return studio_graph("caption-judge")


def semantic_tokens() -> CompiledStateGraph:
    return studio_graph("semantic-tokens")


def classifier() -> CompiledStateGraph:
    return studio_graph("classifier")


def classifier_explain() -> CompiledStateGraph:
    return studio_graph("classifier-explain")


def agentic() -> CompiledStateGraph:
    return studio_graph("agentic")
