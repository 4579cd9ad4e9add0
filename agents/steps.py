"""A StateGraph whose nodes name themselves in the errors they raise.

A window that fails records which step failed (``tokens: server ... does not fit the
model's context``), so a user can tell the VLM's tagging from the LLM's answer or the tool
loop. The step is kept on the exception as ``step``: the innermost node that raised it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from langgraph.graph import StateGraph

from vara.errors import VaraError

__all__ = ["StepGraph", "failed_step"]


def failed_step(exc: BaseException) -> str | None:
    """The graph node that raised ``exc``, if a StepGraph node did."""
    return getattr(exc, "step", None)


def _named(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)  # LangGraph reads the wrapped signature to pass ``runtime``
    def node(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VaraError as exc:
            if failed_step(exc) is None:
                exc.step = name  # type: ignore[attr-defined]
            raise

    return node


class StepGraph(StateGraph):
    """``StateGraph`` whose ``add_node(name, fn)`` tags VaraErrors raised in ``fn`` with name."""

    def add_node(self, node: Any, action: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        if isinstance(node, str) and callable(action):
            action = _named(node, action)
        return super().add_node(node, action, **kwargs)
