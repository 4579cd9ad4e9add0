"""The models a run asks: one pool, connected once, shared by ``vara run`` and ``vara eval``.

``ModelPool.models_for(strategy, spec, labelset)`` gives the ``Models`` a strategy's graph
needs (its ``GraphSpec`` says which): the VLM, the LLM of text steps (``strategy.llm``, else
the VLM), and the scorer. One client or in-process engine per endpoint and one scorer per
setting serve every strategy of an evaluation, so caption-reason and caption-judge share the
VLM, and two classifier strategies one set of weights. Nothing loads here: ``Models.load``
does that once a run is known to go ahead (a refused or finished re-run loads nothing).
Models given to the pool (tests, benchmarks, a caller's own client) replace the strategy's.
An endpoint with several URLs is one client too: a balanced pool of its replicas
(``vara.tools.endpoints``), so graphs never see how many servers answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from vara.agents.graphspec import GraphSpec
from vara.config import Endpoint, ScorerSpec, StrategyConfig
from vara.errors import ConfigError
from vara.tools.chat import ChatModel, load_now
from vara.tools.endpoints import connect
from vara.tools.scorer import DeferredScorer, Scorer, check, configured
from vara.types import LabelSet

__all__ = ["ModelPool", "Models"]


@dataclass(frozen=True)
class Models:
    """The models one strategy asks; None where its graph asks none of that role."""

    vlm: ChatModel | None = None
    llm: ChatModel | None = None
    scorer: Scorer | None = None

    def load(self) -> None:
        """Load what defers its weights (in-process engines, scorers), each once."""
        for model in {id(m): m for m in (self.vlm, self.llm, self.scorer) if m}.values():
            load_now(model)


class ModelPool:
    def __init__(
        self,
        *,
        vlm: ChatModel | None = None,
        llm: ChatModel | None = None,
        scorer: Scorer | None = None,
    ):
        self._given = Models(vlm, llm, scorer)
        self._clients: dict[Endpoint, ChatModel] = {}
        self._scorers: dict[tuple[ScorerSpec, LabelSet], Scorer] = {}

    @property
    def given(self) -> bool:
        """Whether models were given (they live in this process: a Ray worker cannot use them)."""
        return any((self._given.vlm, self._given.llm, self._given.scorer))

    def models_for(self, strategy: StrategyConfig, spec: GraphSpec, labelset: LabelSet) -> Models:
        vlm = self._vlm(strategy) if spec.vlm else None
        llm = self._llm(strategy, vlm) if spec.llm else None
        if spec.tool_calling and not getattr(llm, "supports_tools", False):
            raise ConfigError(
                f"strategy {strategy.name}: graph {strategy.graph!r} calls tools, which needs "
                f"the LLM on a vLLM server ({llm.model_id!r} runs in-process): pass --llm-url "
                "(or --vlm-url) http://HOST:PORT/v1"
            )
        scorer = None
        if spec.scorer == "required" or (
            spec.scorer == "optional" and self._wants_scorer(strategy)
        ):
            scorer = self._scorer(strategy, labelset)
        return Models(vlm, llm, scorer)

    def _wants_scorer(self, strategy: StrategyConfig) -> bool:
        return self._given.scorer is not None or configured(strategy.scorer)

    def _client(self, endpoint: Endpoint) -> ChatModel:
        if endpoint not in self._clients:
            self._clients[endpoint] = connect(endpoint)
        return self._clients[endpoint]

    def _vlm(self, strategy: StrategyConfig) -> ChatModel:
        return self._given.vlm or self._client(strategy.vlm)

    def _llm(self, strategy: StrategyConfig, vlm: ChatModel | None) -> ChatModel:
        if self._given.llm is not None:
            return self._given.llm
        if strategy.llm is not None and strategy.llm.is_set:
            return self._client(strategy.llm)
        return vlm or self._vlm(strategy)

    def _scorer(self, strategy: StrategyConfig, labelset: LabelSet) -> Scorer:
        if self._given.scorer is not None:
            return self._given.scorer
        who = f"strategy {strategy.name}: graph {strategy.graph!r} "
        # Every strategy is checked: each samples its own way.
        check(strategy.scorer, labelset, strategy.sampler, who=who)
        key = (strategy.scorer, labelset)
        if key not in self._scorers:
            self._scorers[key] = DeferredScorer(strategy.scorer, labelset)
        return self._scorers[key]
