"""What a strategy graph is, for everyone who runs one: ``GraphSpec``, and ``linear_graph``.

A graph works on one window (``WindowInput``) and ends in a ``Prediction``, or raises
``StructuredOutputError`` after the allowed re-asks. Its spec says everything the runner,
``vara eval``, the CLI and the strategy loader need to know about it: how to build it, which
prompt roles it renders (and which of them must name a JSON schema), which models it asks,
whether its LLM calls tools, and which cache its VLM outputs go through. A spec missing a
field, or whose fields contradict each other, raises ``GraphSpecError`` naming the field
when it is made, i.e. when the module registering it is imported.

Most graphs are linear: ``sample -> step -> ... -> answer loop`` (the answer is validated
and re-asked, ``nodes.add_answer_loop``) or ``sample -> step -> ... -> finalize``;
``linear_graph`` builds those from the list of steps.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langgraph.graph import END, START
from langgraph.graph.state import CompiledStateGraph

from vara.agents import nodes
from vara.agents.context import Context
from vara.agents.state import WindowInput, WindowState
from vara.agents.steps import StepGraph
from vara.types import FramePlan

__all__ = ["ANSWER_LOOP", "FINALIZE", "GraphSpec", "GraphSpecError", "linear_graph"]

Node = Callable[..., dict]
ANSWER_LOOP = "answer_loop"  # the last step, "answer", is validated and re-asked
FINALIZE = "finalize"  # the steps set state["answer"] themselves; nodes.finalize ends the graph
SCORER_USE = ("none", "optional", "required")


class GraphSpecError(ValueError):
    """A GraphSpec is incomplete or inconsistent (a bug in the graph's registration)."""


_MISSING: Any = object()


def _required(help: str) -> Any:
    return field(default=_MISSING, metadata={"help": help})


@dataclass(frozen=True)
class GraphSpec:
    """One strategy graph: every field is required, and checked when the spec is made."""

    key: str = _required("the registry key a strategy's `graph:` names, e.g. 'caption-reason'")
    description: str = _required("one line: what happens to a window")
    build: Callable[[], CompiledStateGraph] = _required(
        "a function returning the compiled graph (linear_graph(...) makes one)"
    )
    prompt_roles: tuple[str, ...] = _required(
        "the prompt roles the graph renders; a strategy names a prompt for each"
    )
    structured_roles: tuple[str, ...] = _required(
        "the roles (of prompt_roles) whose prompt asks for JSON and must name a schema"
    )
    vlm: bool = _required("whether the graph asks the VLM about frames")
    llm: bool = _required("whether it asks a language model over text (strategy.llm, else the VLM)")
    scorer: Literal["none", "optional", "required"] = _required(
        "whether it uses a scorer (scorer.kind): 'none', 'optional' or 'required'"
    )
    tool_calling: bool = _required("whether its LLM calls tools (needs the LLM on a vLLM server)")
    cache_check: Callable[[Context, FramePlan], bool] | None = _required(
        "None, or, for a graph whose VLM outputs go through the caption cache and which needs "
        "no pixels otherwise: whether all of a window's outputs are cached (then the runner "
        "does not decode the window)"
    )

    def __post_init__(self) -> None:
        name = self.key if isinstance(self.key, str) else "?"
        missing = [f for f in dataclasses.fields(self) if getattr(self, f.name) is _MISSING]
        if missing:
            wanted = "; ".join(f"{f.name}: {f.metadata['help']}" for f in missing)
            raise GraphSpecError(f"GraphSpec {name!r} misses field(s) — {wanted}")
        for problem in _problems(self):
            raise GraphSpecError(f"GraphSpec {name!r}: {problem}")

    @property
    def writes_answers(self) -> bool:
        """A model writes structured answers (so a hallucination rate means something)."""
        return bool(self.structured_roles)


def _problems(spec: GraphSpec) -> list[str]:
    """What is inconsistent in a complete spec, each naming its field."""
    out = []
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", spec.key):
        out.append(f"key {spec.key!r} must be lower-case letters, digits, '-' or '_'")
    if not callable(spec.build):
        out.append("build must be a function returning the compiled graph")
    for name in ("prompt_roles", "structured_roles"):
        roles = getattr(spec, name)
        if not isinstance(roles, tuple) or not all(isinstance(r, str) for r in roles):
            out.append(f"{name} must be a tuple of role names, got {roles!r}")
    if out:
        return out
    if extra := sorted(set(spec.structured_roles) - set(spec.prompt_roles)):
        out.append(f"structured_roles {extra} are not among prompt_roles {spec.prompt_roles}")
    if spec.structured_roles and "reask" not in spec.prompt_roles:
        out.append("prompt_roles lacks 'reask': a structured answer that fails is re-asked")
    for name in ("vlm", "llm", "tool_calling"):
        if not isinstance(getattr(spec, name), bool):
            out.append(f"{name} must be True or False")
    if spec.scorer not in SCORER_USE:
        out.append(f"scorer must be one of {SCORER_USE}, got {spec.scorer!r}")
    if spec.tool_calling and spec.llm is not True:
        out.append("tool_calling needs llm=True: tools are called by the language model")
    if spec.cache_check is not None and spec.vlm is not True:
        out.append("cache_check is for VLM outputs: it needs vlm=True")
    return out


def linear_graph(
    key: str,
    steps: Sequence[tuple[str, Node]],
    *,
    then: Literal["answer_loop", "finalize"],
    state: type = WindowState,
) -> Callable[[], CompiledStateGraph]:
    """A builder of ``sample -> steps... -> (answer loop | finalize)``.

    With ``then=ANSWER_LOOP`` the last step must be named ``answer`` (it asks for the
    structured answer; validate / re-ask / give_up follow); with ``then=FINALIZE`` the steps
    leave ``answer`` (and ``raw``) in the state for ``nodes.finalize``.
    """
    names = [name for name, _ in steps]
    if then == ANSWER_LOOP and names[-1:] != ["answer"]:
        raise GraphSpecError(f"linear graph {key!r}: the answer loop needs a last step 'answer'")
    if then not in (ANSWER_LOOP, FINALIZE):
        raise GraphSpecError(f"linear graph {key!r}: then must be {ANSWER_LOOP} or {FINALIZE}")

    def build() -> CompiledStateGraph:
        g = StepGraph(state, context_schema=Context, input_schema=WindowInput)
        chain = [("sample", nodes.sample), *steps]
        for name, fn in chain:
            g.add_node(name, fn)
        g.add_edge(START, "sample")
        for (a, _), (b, _) in zip(chain, chain[1:], strict=False):
            g.add_edge(a, b)
        if then == ANSWER_LOOP:
            nodes.add_answer_loop(g)
        else:
            g.add_node("finalize", nodes.finalize)
            g.add_edge(chain[-1][0], "finalize")
            g.add_edge("finalize", END)
        return g.compile(name=key)

    return build
