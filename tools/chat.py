"""The chat-model interface every model backend implements (HTTP server or in-process).

A backend takes a list of ``Message`` (text plus optional RGB frames) and returns a
``Completion``. With ``json_schema`` set, the backend must constrain decoding to that schema
(vLLM: ``response_format``; in-process: xgrammar); callers still validate the text.

Tool calling follows the OpenAI tools API: ``tools`` are OpenAI function specs
(``{"type": "function", "function": {name, description, parameters}}``), ``tool_choice`` is
"auto", "none", "required" or one tool's name (that tool must be called). The model's calls
come back as ``Completion.tool_calls``; their results go back as ``Message("tool", text,
tool_call_id=...)`` after the assistant turn that made them (``Message.tool_calls``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

__all__ = [
    "ChatModel",
    "Completion",
    "Message",
    "ToolCall",
    "TOOL_CHOICES",
    "load_now",
    "weights_fingerprint",
]

# tool_choice values that are not a tool's name.
TOOL_CHOICES = ("auto", "none", "required")


@dataclass(frozen=True)
class ToolCall:
    """One call the model asked for. ``error`` is set (and ``arguments`` empty) when the
    model's arguments were not a JSON object: the caller reports it as the call's result
    instead of running the tool, so a garbled call never crashes a run."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True, eq=False)
class Message:
    """One chat turn. ``images`` are RGB uint8 (H, W, 3) arrays, placed before the text.

    An assistant turn may carry the ``tool_calls`` it made; a ``tool`` turn is the result of
    one call and names it by ``tool_call_id``.
    """

    role: Literal["system", "user", "assistant", "tool"]
    text: str
    images: tuple[np.ndarray, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    def __post_init__(self) -> None:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"only an assistant turn makes tool calls, not {self.role!r}")


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    latency_s: float
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()


class ChatModel(Protocol):
    """What tools.reason and the agents need from a model, whatever serves it."""

    model_id: str
    supports_tools: bool  # honours ``tools``/``tool_choice`` (a vLLM server does; in-process not)
    # What produced the answers: backend, model and, for a local checkpoint, its weight files.
    # The caption cache keys on it, so a retrained checkpoint at the same path, or the same
    # weights run by another backend, is captioned afresh.
    cache_identity: str

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
    ) -> Completion: ...

    def close(self) -> None: ...


def load_now(model: ChatModel | None) -> None:
    """Load a backend that defers its weights (an in-process engine from ``connect``), so a
    model that cannot load fails once, before the first window, rather than in each."""
    load = getattr(model, "load", None)
    if load is not None:
        load()


def weights_fingerprint(model: str) -> str | None:
    """Short hash of a local model directory's files (names, sizes, modification times).

    It changes when a checkpoint at that path is rebuilt or retrained; a copy elsewhere gets a
    new one too. ``None`` for a hub id, or a path that is not on this machine.
    """
    path = Path(model).expanduser()
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    for p in sorted(path.iterdir()):
        if p.is_file() and not p.name.startswith("."):
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]
