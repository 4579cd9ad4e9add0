"""Strategy configuration: frozen dataclasses, validated by a JSON schema, with CLI overrides.

A strategy is a YAML file (``agents/strategies/<name>.yaml``) that names a graph from the
agents' registry, the prompts it renders, how windows and frames are sampled, and which
models answer. ``parse_strategy`` validates the dict against ``strategy.schema.json`` first,
so a typo fails with the field's path instead of a KeyError deep in a run.
``apply_overrides`` turns ``key.sub=value`` strings (value parsed as YAML) into a new dict.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import yaml

from vara import schemas
from vara.errors import ConfigError
from vara.smoothing import Smoothing
from vara.types import SamplerSpec

log = logging.getLogger(__name__)

__all__ = [
    "Endpoint",
    "WindowSpec",
    "Generation",
    "ScorerSpec",
    "PixelConfig",
    "EvidenceSpec",
    "AgentSpec",
    "TokensSpec",
    "StrategyConfig",
    "strategy_schema",
    "parse_strategy",
    "apply_overrides",
]


@dataclass(frozen=True)
class Endpoint:
    """Where a model runs.

    ``url`` is an OpenAI-compatible base URL (e.g. ``http://127.0.0.1:8000/v1``) of a vLLM
    server, or a list of them: replicas serving the same model (by the same name, LoRA
    adapters included), balanced by least outstanding requests with failover
    (``vara.tools.endpoints``). None runs ``model`` in-process (a hub id or a local
    directory). With a URL and no model, the server's only model is used.
    ``max_concurrency`` caps requests in flight per replica.
    """

    model: str | None = None
    url: str | tuple[str, ...] | None = None
    api_key: str = "EMPTY"
    timeout_s: float = 120.0
    max_concurrency: int = 8
    max_retries: int = 3
    # how often a replica taken out after a failure is checked (GET /models) to put it back
    health_interval_s: float = 5.0
    # in-process only: a PEFT LoRA adapter directory applied to ``model`` (a served adapter
    # is selected by its name in ``model`` instead: vara serve --lora NAME=DIR)
    adapter: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.url, list):  # from YAML: a tuple keeps the endpoint hashable
            object.__setattr__(self, "url", tuple(self.url))

    @property
    def urls(self) -> tuple[str, ...]:
        """Every replica's URL, in the order given (none: in-process)."""
        if not self.url:
            return ()
        return (self.url,) if isinstance(self.url, str) else tuple(self.url)

    @property
    def is_set(self) -> bool:
        return bool(self.model or self.url)


@dataclass(frozen=True)
class WindowSpec:
    """Windows cut from each video: ``window_s`` long, overlapping by ``overlap`` (0..1)."""

    window_s: float = 2.0
    overlap: float = 0.5


@dataclass(frozen=True)
class Generation:
    caption_max_tokens: int = 128
    answer_max_tokens: int = 1024
    tokens_max_tokens: int = 1536
    temperature: float = 0.0


@dataclass(frozen=True)
class ScorerSpec:
    """A model that scores a window's frames per class, for graphs that take one.

    ``kind`` names an entry of ``vara.tools.scorer.SCORERS``; each kind reads the fields it
    needs (``run-dir``: ``run_dir``, a ``vara finetune`` run directory of the LoRA VLM
    classifier or the TimeSformer baseline; ``clip``: ``model``, ``pool``, ``prompt``, a
    zero-shot CLIP-family checkpoint).
    """

    kind: str = "run-dir"
    run_dir: str | None = None  # kind run-dir; None = no scorer (graphs that need one refuse)
    model: str | None = None  # kind clip: a CLIP / SigLIP checkpoint, hub id or local path
    pool: str = "mean"  # kind clip: mean of frame embeddings, or vote (mean of frame probs)
    prompt: str = "clip.v1"  # kind clip: the template ensemble (prompts/clip.v1.yaml)
    device: str = "auto"  # auto = cuda if available, else cpu
    batch_size: int = 8  # run-dir: windows per forward pass; clip: frames per forward pass
    precision: str = "auto"  # auto = the run's own (bf16 on CUDA if trained so), fp32 on CPU


@dataclass(frozen=True)
class EvidenceSpec:
    """What happens to an evidence quote not found in what it cites (tools/evidence.py)."""

    # reask: it makes the answer invalid (re-asked; on the last answer kept, marked
    # unverified). mark: marked unverified at once, never re-asked (no extra requests; for
    # models too small to quote, e.g. the random test model)
    check: str = "reask"


@dataclass(frozen=True)
class PixelConfig:
    """Pixel steps after the resize (``sampler.max_side``): ``name:key=value,...`` strings of
    ``vara.tools.pixels.STEPS``, applied in order to every decoded frame."""

    perturb: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentSpec:
    """The tool-calling loop of the ``agentic`` graph."""

    max_steps: int = 4  # LLM turns that may call tools before the final structured answer
    first_tool: str | None = None  # force this tool on the first turn (named tool_choice)
    look_again_max_frames: int = 8  # cap on frames one look_again call may decode
    tool_max_tokens: int = 256  # budget of a tool-calling turn


@dataclass(frozen=True)
class TokensSpec:
    """The semantic-tokens graph's closed vocabulary (``vara tokens vocab`` writes one)."""

    # None: free-text tags. A path: each tag field becomes an enum of the vocabulary, so
    # constrained decoding emits only its tokens; its sha256 joins the tag cache key.
    vocab: str | None = None


@dataclass(frozen=True)
class StrategyConfig:
    name: str
    graph: str
    prompts: dict[str, str]
    description: str = ""
    windows: WindowSpec = field(default_factory=WindowSpec)
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    frames_per_caption: int | None = None
    vlm: Endpoint = field(default_factory=Endpoint)
    llm: Endpoint | None = None
    generation: Generation = field(default_factory=Generation)
    max_reasks: int = 1
    concurrency: int = 4
    scorer: ScorerSpec = field(default_factory=ScorerSpec)
    pixels: PixelConfig = field(default_factory=PixelConfig)
    evidence: EvidenceSpec = field(default_factory=EvidenceSpec)
    agent: AgentSpec = field(default_factory=AgentSpec)
    tokens: TokensSpec = field(default_factory=TokensSpec)
    timeline: Smoothing = field(default_factory=Smoothing)  # how its timelines are smoothed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def strategy_schema() -> dict[str, Any]:
    text = resources.files("vara").joinpath("strategy.schema.json").read_text()
    return json.loads(text)


# Sections of a strategy and the dataclass each becomes; other keys are plain values.
_SECTIONS = {
    "windows": WindowSpec,
    "sampler": SamplerSpec,
    "vlm": Endpoint,
    "generation": Generation,
    "scorer": ScorerSpec,
    "evidence": EvidenceSpec,
    "agent": AgentSpec,
    "tokens": TokensSpec,
}


def _renamed_classifier(data: dict[str, Any], source: str) -> dict[str, Any]:
    """``classifier:`` (before scorers had kinds) is ``scorer:`` of kind run-dir."""
    if "classifier" not in data:
        return data
    log.warning(
        "strategy %s: `classifier.*` is now `scorer.*` (kind run-dir), e.g. "
        "--set scorer.run_dir=RUN_DIR; read as such",
        source,
    )
    out = dict(data)
    out["scorer"] = {"kind": "run-dir", **(out.get("scorer") or {}), **out.pop("classifier")}
    return out


def parse_strategy(
    data: dict[str, Any], *, source: str = "<strategy>", schema: dict[str, Any] | None = None
) -> StrategyConfig:
    """Validate ``data`` against the strategy schema (``schema``, else the packaged one) and
    build a StrategyConfig; what a strategy leaves out keeps the dataclasses' defaults."""
    data = _renamed_classifier(data, source)
    schemas.check(data, schema or strategy_schema(), f"strategy {source}")
    fields = copy.deepcopy(data)
    try:
        for key, cls in _SECTIONS.items():
            if key in fields:
                fields[key] = cls(**fields[key])
        if "llm" in fields:
            fields["llm"] = Endpoint(**fields["llm"]) if fields["llm"] else None
        if "pixels" in fields:
            fields["pixels"] = PixelConfig(tuple(fields["pixels"].get("perturb", ())))
        if "timeline" in fields:
            fields["timeline"] = Smoothing.from_dict(fields["timeline"])
        return StrategyConfig(**fields)
    except ValueError as exc:  # __post_init__ checks, e.g. SamplerSpec
        raise ConfigError(f"strategy {source}: {exc}") from None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], *, example: str = "sampler.n_frames=16"
) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.sub=value`` applied (value parsed as YAML).

    ``sampler.n_frames=16``, ``vlm.url=http://host:8000/v1``, ``vlm.url=[URL1, URL2]``,
    ``llm=null``.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.sub=value, e.g. {example}")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        parts = key.split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out
