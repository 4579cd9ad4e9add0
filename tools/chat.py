"""The chat-model interface every model backend implements (HTTP server or in-process).

A backend takes a list of ``Message`` (text plus optional RGB frames) and returns a
``Completion``. With ``json_schema`` set, the backend must constrain decoding to that schema
(vLLM: ``response_format``; in-process: xgrammar); callers still validate the text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np


@dataclass(frozen=True, eq=False)
class Message:
    """One chat turn. ``images`` are RGB uint8 (H, W, 3) arrays, placed before the text."""

    role: Literal["system", "user", "assistant"]
    text: str
    images: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    latency_s: float
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class ChatModel(Protocol):
    """What tools.reason and the agents need from a model, whatever serves it."""

    model_id: str

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion: ...

    def close(self) -> None: ...
