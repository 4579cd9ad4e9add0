"""Offline test helpers for users and the test suite: a tiny random-weight VLM and synthetic
videos. Nothing here downloads anything; heavy imports happen inside the functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "SEMANTIC_TAG",
    "ScriptedChatModel",
    "build_tiny_clip",
    "build_tiny_vlm",
    "write_test_video",
]

# One frame's semantic tokens as the tokens.v1 schema has them, for scripted VLM replies.
SEMANTIC_TAG = {
    "actors": ["nurse"],
    "actions": ["holds mask"],
    "objects": [],
    "body_parts": [],
    "tools": [],
    "motion": "",
}


def build_tiny_vlm(path: str | Path, **kwargs: Any) -> Path:
    """Build a tiny random Idefics3 VLM (+ locally trained tokenizer) that both vLLM and
    transformers load; see ``vara.testing.tiny_vlm.build_tiny_vlm`` for the options."""
    from vara.testing.tiny_vlm import build_tiny_vlm as build

    return build(path, **kwargs)


def build_tiny_clip(path: str | Path, **kwargs: Any) -> Path:
    """Build a tiny random CLIP or SigLIP (``kind="siglip"``) offline; see
    ``vara.testing.tiny_clip.build_tiny_clip``."""
    from vara.testing.tiny_clip import build_tiny_clip as build

    return build(path, **kwargs)


def write_test_video(path: str | Path, **kwargs: Any) -> Path:
    """Write a synthetic video whose frames encode their own index; see
    ``vara.testing.synth_video.write_test_video`` for codecs and options."""
    from vara.testing.synth_video import write_test_video as write

    return write(path, **kwargs)


class ScriptedChatModel:
    """A ChatModel that returns scripted replies in order and records every request.

    For tests of graph routing (re-ask, give-up, tool loops) where a real model cannot be
    made to answer badly on cue. A reply is the answer's text, or a sequence of
    ``vara.tools.chat.ToolCall`` for a turn that calls tools. Raises ``AssertionError`` if
    asked more often than scripted.
    """

    supports_tools = True

    def __init__(self, replies: list[Any], model_id: str = "scripted"):
        self.model_id = model_id
        self.cache_identity = f"scripted:{model_id}"
        self._replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    def complete(
        self,
        messages,
        *,
        json_schema=None,
        max_tokens=256,
        temperature=0.0,
        tools=None,
        tool_choice=None,
    ):
        from vara.tools.chat import Completion

        self.requests.append(
            {
                "messages": list(messages),
                "json_schema": json_schema,
                "tools": tools,
                "tool_choice": tool_choice,
            }
        )
        if not self._replies:
            raise AssertionError(
                f"ScriptedChatModel: request {len(self.requests)} was not scripted"
            )
        reply = self._replies.pop(0)
        if isinstance(reply, str):
            return Completion(text=reply, model=self.model_id, latency_s=0.0)
        return Completion(text="", model=self.model_id, latency_s=0.0, tool_calls=tuple(reply))

    def close(self) -> None:
        pass
