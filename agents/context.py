"""Run-scoped context injected into every node through ``Runtime[Context]``: the strategy,
label set, prompt templates, models (VLM, LLM, scorer), the frame store and the cache.

Built once per run (``agents.runner``), before any window, and never replaced.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from vara.agents.frames import FrameStore
from vara.config import StrategyConfig
from vara.prompts.loader import PromptTemplate
from vara.tools.cache import CaptionCache
from vara.tools.chat import ChatModel
from vara.tools.scorer import Scorer
from vara.types import LabelSet, PromptRef

__all__ = ["Context", "RunStats"]


class RunStats:
    """Thread-safe counters a run reports (e.g. caption_requests, caption_cache_hits)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


@dataclass(frozen=True, eq=False)
class Context:
    strategy: StrategyConfig
    labelset: LabelSet
    prompts: dict[str, PromptTemplate]  # role (caption, answer, reask) -> template
    vlm: ChatModel | None  # None for graphs that never ask a VLM (classifier)
    llm: ChatModel | None  # the language model of text steps: strategy.llm, else the VLM
    frames: FrameStore
    cache: CaptionCache | None = None  # VLM outputs on frames (captions, tokens) are reused
    stats: RunStats = field(default_factory=RunStats)
    scorer: Scorer | None = None  # strategy.scorer, for graphs that take one

    def model_ids(self) -> dict[str, str]:
        """Role -> model id of every model this run uses (provenance, resume fingerprint)."""
        roles = (("vlm", self.vlm), ("llm", self.llm), ("scorer", self.scorer))
        return {role: m.model_id for role, m in roles if m is not None}

    @property
    def prompt_refs(self) -> tuple[PromptRef, ...]:
        return tuple(p.ref for _, p in sorted(self.prompts.items()))
