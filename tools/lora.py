"""PEFT LoRA adapters of a generative VLM: find, check, serve with vLLM, apply in-process, merge.

An adapter is the directory ``save_pretrained`` of a peft model writes (``adapter_config.json``
+ ``adapter_model.safetensors``), or a ``vara finetune`` run directory holding it as
``adapter/``. ``read_adapter`` checks it before anything loads and says what it needs:

- its rank ``r`` (the largest, ``rank_pattern`` included): vLLM must be started with a
  ``--max-lora-rank`` at least that large, from the values vLLM accepts (``VLLM_LORA_RANKS``);
- whether it changes the vision tower or the connector (read from its weight names, not from
  ``target_modules``: a name like ``q_proj`` matches the tower's attention too): vLLM applies
  LoRA there only with ``--enable-tower-connector-lora``.

``server_fields`` turns ``NAME=DIR`` specs into the ``ServerOptions`` fields of one server
serving the base and every adapter (each selected by its NAME as the request's ``model``).
``apply_adapter`` wraps a loaded base model with peft, unmerged, as vLLM applies it;
``merge_adapter`` folds it into the weights for engines that cannot apply LoRA.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError

__all__ = [
    "VLLM_LORA_RANKS",
    "AdapterInfo",
    "LoraModule",
    "apply_adapter",
    "base_and_adapter",
    "find_adapter",
    "is_adapter",
    "merge_adapter",
    "parse_lora",
    "read_adapter",
    "server_fields",
    "vllm_max_lora_rank",
]

log = logging.getLogger(__name__)

# vLLM's LoRAConfig.max_lora_rank is one of these (vllm/config/lora.py, MaxLoRARanks, 0.32).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# Module-path segments of vision towers and connectors across the VLMs vLLM serves
# (Idefics3/SmolVLM: vision_model, connector; LLaVA: vision_tower, multi_modal_projector;
# Qwen-VL: visual).
TOWER_SEGMENTS = frozenset(
    {"vision_model", "vision_tower", "visual", "connector", "multi_modal_projector", "mm_projector"}
)
_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
_FIX = (
    "pass the directory peft's save_pretrained wrote (adapter_config.json + "
    "adapter_model.safetensors) or a vara finetune run directory holding it as adapter/"
)


@dataclass(frozen=True)
class AdapterInfo:
    path: str  # the directory holding adapter_config.json
    rank: int  # the largest r of its layers
    base_model: str | None  # base_model_name_or_path as peft recorded it
    tower_connector: bool  # it changes vision-tower or connector weights
    n_tensors: int


@dataclass(frozen=True)
class LoraModule:
    """One adapter a server serves: requests with ``"model": name`` use it."""

    name: str
    path: str


def is_adapter(path: str | Path) -> bool:
    """Whether ``path`` is (or holds as ``adapter/``) a PEFT adapter, not a full checkpoint."""
    p = Path(path).expanduser()
    return p.is_dir() and (
        (p / "adapter_config.json").is_file() or (p / "adapter" / "adapter_config.json").is_file()
    )


def find_adapter(path: str | Path) -> Path:
    """The adapter directory of ``path`` (itself, or its ``adapter/``); errors name the fix."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise InputError(f"adapter {str(path)!r} not found: {_FIX}")
    if (p / "classifier.json").is_file() or (p / "head.safetensors").is_file():
        raise InputError(
            f"{str(path)!r} is a lora_classifier run directory: its adapter feeds a "
            f"classification head, which no chat engine can serve. Use it as a scorer "
            f"(--set scorer.run_dir={path}), or train a generative adapter (vara finetune "
            f"lvlm_sft)"
        )
    for candidate in (p, p / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    raise InputError(f"{str(path)!r} holds no adapter_config.json (nor adapter/): {_FIX}")


def read_adapter(path: str | Path) -> AdapterInfo:
    """Check the adapter at ``path`` and read what serving it needs (module docstring)."""
    where = find_adapter(path)
    try:
        config = json.loads((where / "adapter_config.json").read_text())
    except json.JSONDecodeError as exc:
        raise InputError(
            f"adapter {str(path)!r}: adapter_config.json is not JSON ({exc})"
        ) from None
    kind = config.get("peft_type", "LORA")
    if kind != "LORA" or not isinstance(config.get("r"), int):
        raise InputError(
            f"adapter {str(path)!r} is a {kind} adapter without an integer rank r: vLLM serves "
            f"only LoRA adapters"
        )
    ranks = [config["r"], *(config.get("rank_pattern") or {}).values()]
    names = _tensor_names(where, path)
    tower = any(TOWER_SEGMENTS & set(name.split(".")) for name in names)
    return AdapterInfo(
        path=str(where.resolve()),
        rank=max(int(r) for r in ranks),
        base_model=config.get("base_model_name_or_path"),
        tower_connector=tower,
        n_tensors=len(names),
    )


def _tensor_names(where: Path, given: str | Path) -> list[str]:
    weights = next((where / w for w in _WEIGHTS if (where / w).is_file()), None)
    if weights is None:
        raise InputError(
            f"adapter {str(given)!r} has adapter_config.json but no {' or '.join(_WEIGHTS)} "
            f"(an interrupted save?): save the adapter again"
        )
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="np") as f:
            names = list(f.keys())
    else:
        import torch

        names = list(torch.load(weights, map_location="cpu", weights_only=True))
    if not names:
        raise InputError(f"adapter {str(given)!r}: {weights.name} holds no tensors; save it again")
    return names


def vllm_max_lora_rank(ranks: Sequence[int]) -> int:
    """The smallest rank vLLM accepts as ``--max-lora-rank`` that fits every adapter."""
    need = max(ranks)
    for r in VLLM_LORA_RANKS:
        if r >= need:
            return r
    raise InputError(
        f"an adapter has rank {need}; vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}: "
        f"merge it instead (vara export ADAPTER --merged OUT) and serve the merged model"
    )


def parse_lora(spec: str) -> LoraModule:
    """``NAME=DIR`` -> LoraModule (the directory checked by ``read_adapter`` later)."""
    name, sep, path = spec.partition("=")
    name = name.strip()
    if not sep or not name or not path:
        raise InputError(f"--lora {spec!r}: expected NAME=ADAPTER_DIR, e.g. --lora tuned=runs/sft")
    if any(c.isspace() for c in name) or "/" in name:
        raise InputError(f"--lora {spec!r}: the name {name!r} may not hold spaces or '/'")
    return LoraModule(name, path)


def server_fields(specs: Sequence[str], base: str) -> dict[str, Any]:
    """``ServerOptions`` fields serving ``base`` plus the adapters ``NAME=DIR`` of ``specs``:
    their modules, a ``--max-lora-rank`` that fits them, and tower/connector LoRA when one
    of them needs it. Every adapter is checked first; a bad one fails here, naming it."""
    modules = [parse_lora(s) for s in specs]
    names = [m.name for m in modules]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise InputError(f"--lora names must differ; {dupes} given more than once")
    if base in names:
        raise InputError(f"--lora name {base!r} is the base model's own name: choose another")
    infos = [read_adapter(m.path) for m in modules]
    for m, info in zip(modules, infos, strict=True):
        if info.base_model and Path(info.base_model).name != Path(base).name:
            log.warning(
                "adapter %s (%s) was trained on %s, not on %s",
                m.name,
                m.path,
                info.base_model,
                base,
            )
    return {
        "lora_modules": tuple((m.name, info.path) for m, info in zip(modules, infos, strict=True)),
        "max_lora_rank": vllm_max_lora_rank([i.rank for i in infos]),
        "tower_connector_lora": any(i.tower_connector for i in infos),
    }


def base_and_adapter(model: str, adapter: str | Path | None) -> tuple[str, AdapterInfo | None]:
    """(the checkpoint to load, the adapter to apply to it or None) for an in-process engine
    given ``model`` (a checkpoint, or an adapter whose recorded base is loaded) and
    ``adapter``."""
    if adapter is not None:
        return model, read_adapter(adapter)
    if not is_adapter(model):
        return model, None
    info = read_adapter(model)
    if not info.base_model:
        raise InputError(
            f"adapter {model!r} names no base model (base_model_name_or_path): pass the base "
            f"model and the adapter separately (--vlm-model BASE --adapter {model})"
        )
    return info.base_model, info


def apply_adapter(net: Any, info: AdapterInfo) -> Any:
    """``net`` (the loaded base model) with the adapter applied, unmerged, for inference."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(net, info.path, is_trainable=False)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise InputError(
            f"adapter {info.path!r} does not fit model {info.base_model or 'given'}: "
            f"{str(exc).splitlines()[0]} (was it trained on another base model?)"
        ) from exc


def merge_adapter(net: Any, info: AdapterInfo) -> Any:
    """A plain transformers model with the adapter folded into its weights."""
    return apply_adapter(net, info).merge_and_unload()
