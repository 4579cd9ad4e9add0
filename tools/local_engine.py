"""In-process chat model: transformers ``generate()`` behind the ``ChatModel`` interface.

The embedded default, so ``vara run video.mp4`` works without a server. It loads a
vision-language model (AutoProcessor + AutoModelForImageTextToText) or, for a text-only
model, AutoTokenizer + AutoModelForCausalLM, from a hub id or a local directory:

    engine = LocalEngine("HuggingFaceTB/SmolVLM-256M-Instruct")   # or a local path
    reply = engine.complete([Message("user", "What happens?", images=(frame,))],
                            json_schema={"type": "object", ...})

A PEFT LoRA adapter (``adapter=``, or an adapter directory as ``model``) is applied unmerged.

``json_schema`` constrains decoding with xgrammar's transformers logits processor (vLLM
uses the same engine server-side). xgrammar bug: ``maxLength`` on strings can yield invalid
JSON; bound free text with ``pattern`` or ``max_tokens`` instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vara.errors import EndpointError, InputError, VaraError
from vara.tools.chat import Completion, Message, weights_fingerprint
from vara.tools.devices import resolve_device
from vara.tools.lora import apply_adapter, base_and_adapter


class LocalEngine:
    """A transformers model that answers chat messages (thread-safe, one generate at a time)."""

    supports_tools = False  # transformers has no tool-call parser; vLLM does this

    def __init__(
        self,
        model: str | Path,
        *,
        adapter: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        lazy: bool = False,
    ):
        """Load ``model`` now, or with ``lazy`` on first use (``load()``, ``complete()``,
        ``multimodal``, ``cache_identity``). Either way a path that is no checkpoint, a
        device or dtype that does not exist, fails here, before any weights load.

        ``adapter`` is a PEFT LoRA adapter (or a run directory holding one) applied to
        ``model`` as vLLM applies it; ``model`` may itself be an adapter directory, whose
        recorded base model is then loaded."""
        self._base, self._adapter = base_and_adapter(str(model), adapter)
        a = self._adapter
        self.model_id = self._base if a is None else f"{self._base}+lora:{a.path}"
        self._lock = threading.RLock()
        model_source(self._base)  # a missing directory fails now, not at first use
        self._device = resolve_device(device, "device")
        self._dtype = _resolve_dtype(dtype, self._device)
        self._model: Any = None
        self._closed = False
        self._grammar_compiler: Any = None  # built on the first json_schema request
        if not lazy:
            self.load()

    def load(self) -> None:
        """Load the weights (once; later calls return at once). A run calls it before its
        first window, so a model that cannot load fails once, not in every window."""
        with self._lock:
            if self._closed:
                raise EndpointError(f"LocalEngine for model '{self.model_id}' is closed")
            if self._model is not None:
                return
            model, self._processor, self._tokenizer = _load(self._base, self._device, self._dtype)
            if self._adapter is not None:
                model = apply_adapter(model, self._adapter).eval()
            self._eos_ids = _eos_ids(model, self._tokenizer)
            # transformers' own generate() in this dtype; a hub checkpoint by its commit.
            revision = weights_fingerprint(self._base) or getattr(
                model.config, "_commit_hash", None
            )
            parts = {"model": self.model_id, "weights": revision, "dtype": str(model.dtype)}
            if self._adapter is not None:
                parts["adapter"] = weights_fingerprint(self._adapter.path)
            self._identity = "transformers:" + json.dumps(parts, sort_keys=True)
            self._model = model

    @property
    def multimodal(self) -> bool:
        """Whether the model takes images (a VLM), not only text."""
        self.load()
        return self._processor is not None

    @property
    def cache_identity(self) -> str:
        """``transformers:`` + the model, its weights (a local checkpoint's fingerprint, a
        hub checkpoint's commit) and the dtype it runs in."""
        self.load()
        return self._identity

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
    ) -> Completion:
        """Answer ``messages``; greedy when temperature == 0, else sampling."""
        if tools or tool_choice is not None or any(m.role == "tool" for m in messages):
            # transformers has no tool-call parser; vLLM's (--tool-call-parser) does this.
            raise EndpointError(
                f"in-process model '{self.model_id}' cannot call tools: tool calling needs a "
                f"vLLM server (set llm.url, e.g. --llm-url http://127.0.0.1:8000/v1)"
            )
        if max_tokens < 1:
            raise InputError(f"max_tokens must be >= 1, got {max_tokens}")
        if temperature < 0:
            raise InputError(f"temperature must be >= 0, got {temperature}")
        if not messages:
            raise InputError("complete() needs at least one message")
        started = time.perf_counter()
        with self._lock:
            self.load()
            inputs = self._encode(messages)
            gen_kwargs = self._generation_kwargs(max_tokens, temperature)
            if json_schema is not None:
                # A processor holds matcher state: one per generate() call.
                gen_kwargs["logits_processor"] = [self._json_processor(json_schema)]
            import torch

            with torch.inference_mode():
                output = self._model.generate(**inputs, **gen_kwargs)
        prompt_len = inputs["input_ids"].shape[1]
        new_ids = output[0, prompt_len:].tolist()
        stopped = bool(new_ids) and new_ids[-1] in self._eos_ids
        text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        return Completion(
            text=text,
            model=self.model_id,
            latency_s=time.perf_counter() - started,
            finish_reason="stop" if stopped or len(new_ids) < max_tokens else "length",
            prompt_tokens=int(prompt_len),
            completion_tokens=len(new_ids),
        )

    def close(self) -> None:
        """Free the weights; later calls raise EndpointError."""
        with self._lock:
            self._model = self._processor = self._grammar_compiler = None
            self._closed = True
        if self._device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    def _encode(self, messages: Sequence[Message]) -> dict[str, Any]:
        """Chat template -> token ids (and pixel tensors), on the model's device."""
        turns, images = conversation(messages, self.multimodal, self.model_id)
        templater = self._processor if self.multimodal else self._tokenizer
        if not getattr(self._tokenizer, "chat_template", None) and not getattr(
            self._processor, "chat_template", None
        ):
            raise EndpointError(
                f"model '{self.model_id}' has no chat template: use an instruct/chat checkpoint"
            )
        prompt = templater.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
        if self.multimodal:
            inputs = self._processor(text=[prompt], images=images or None, return_tensors="pt")
        else:
            # The template already wrote BOS and the role markers.
            inputs = self._tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        return {k: v.to(self._device) if hasattr(v, "to") else v for k, v in inputs.items()}

    def _generation_kwargs(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "eos_token_id": sorted(self._eos_ids),
            "pad_token_id": self._tokenizer.pad_token_id
            if self._tokenizer.pad_token_id is not None
            else min(self._eos_ids),
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            # Neutralise sampling defaults from the checkpoint's generation_config.
            kwargs.update(do_sample=False, temperature=1.0, top_p=1.0, top_k=50)
        return kwargs

    def _json_processor(self, schema: dict[str, Any]):
        import xgrammar as xgr
        from xgrammar.contrib.hf import LogitsProcessor

        if self._grammar_compiler is None:
            vocab_size = self._model.get_output_embeddings().weight.shape[0]
            info = xgr.TokenizerInfo.from_huggingface(
                self._tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(self._eos_ids)
            )
            self._grammar_compiler = xgr.GrammarCompiler(info)  # caches compiled schemas
        try:
            # As vLLM compiles it (disable_any_whitespace): schema key order, compact separators.
            grammar = self._grammar_compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False, separators=(",", ":")
            )
        except Exception as exc:  # xgrammar raises RuntimeError/ValueError subclasses
            raise InputError(
                f"JSON schema cannot be compiled for constrained decoding: {exc}"
            ) from exc
        return LogitsProcessor(grammar)


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # The checkpoint's dtype on GPU; float32 on CPU, where half types are slow or missing.
        return "auto" if device.startswith("cuda") else torch.float32
    value = getattr(torch, dtype, None)
    if not isinstance(value, torch.dtype):
        raise InputError(f"dtype '{dtype}' is not a torch dtype (try float32, bfloat16, auto)")
    return value


def load_checkpoint(model: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any, Any]:
    """(model, processor or None, tokenizer) of a checkpoint, in its own dtype by default
    (``vara export`` writes what it read, not a float32 copy)."""
    device = resolve_device(device, "device")
    return _load(model, device, "auto" if dtype == "auto" else _resolve_dtype(dtype, device))


def _load(model: str, device: str, dtype: Any) -> tuple[Any, Any, Any]:
    """Return (model, processor or None, tokenizer); errors name the model and the fix."""
    source, kwargs = model_source(model)
    with without_log_messages(SPURIOUS_CONFIG_WARNING):
        return _load_quietly(model, source, kwargs, device, dtype)


def _load_quietly(model: str, source: str, kwargs: dict[str, Any], device: str, dtype: Any):
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise not_loadable(model, exc) from exc
    vlm = config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    try:
        if vlm:
            processor = AutoProcessor.from_pretrained(source, **kwargs)
            tokenizer = getattr(processor, "tokenizer", None)
            if tokenizer is None or getattr(processor, "image_processor", None) is None:
                raise EndpointError(_processor_hint(model, config.model_type))
            net = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **kwargs)
        else:
            processor = None
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            net = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except ImportError as exc:
        raise EndpointError(f"model '{model}' needs a package that is missing here: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise not_loadable(model, exc) from exc
    return net.to(device).eval(), processor, tokenizer


# Printing a config builds the class's default config to diff against, and Idefics3's
# default has a pad_token_id outside its default vocabulary: not the checkpoint's config.
SPURIOUS_CONFIG_WARNING = {
    "transformers.configuration_utils": "Model config: pad_token_id must be",
}


@contextlib.contextmanager
def without_log_messages(messages: dict[str, str]) -> Iterator[None]:
    """Hold back log records whose message contains ``messages[logger]``; others pass."""
    filters = []
    for name, text in messages.items():

        def keep(record: logging.LogRecord, text: str = text) -> bool:
            return text not in str(record.msg)

        logging.getLogger(name).addFilter(keep)
        filters.append((name, keep))
    try:
        yield
    finally:
        for name, keep in filters:
            logging.getLogger(name).removeFilter(keep)


def model_source(model: str) -> tuple[str, dict[str, Any]]:
    """(what to pass to ``from_pretrained``, its kwargs) for a hub id or a local directory;
    a local directory never touches the hub, a hub id loads (and caches) as usual."""
    path = Path(model).expanduser()
    local = path.exists()
    if not local and _looks_like_path(model):
        raise InputError(
            f"model directory '{model}' does not exist (a hub id looks like 'org/name')"
        )
    if local and not (path / "config.json").is_file():
        raise InputError(
            f"model directory '{model}' has no config.json (not a transformers "
            "checkpoint): pass the folder that save_pretrained wrote"
        )
    return (str(path), {"local_files_only": True}) if local else (model, {})


def _looks_like_path(model: str) -> bool:
    """Hub ids are 'name' or 'org/name'; anything else with separators is a path typo."""
    return model.startswith(("/", ".", "~")) or "\\" in model or model.count("/") > 1


def not_loadable(model: str, exc: Exception) -> VaraError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if Path(model).expanduser().exists():
        return InputError(f"model directory '{model}' cannot be loaded: {reason}")
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "false", "no", ""):
        return EndpointError(
            f"model '{model}' not found locally and the hub is unreachable (HF_HUB_OFFLINE is "
            "set): pass a local path or set HF_HUB_OFFLINE=0"
        )
    return EndpointError(
        f"model '{model}' is not a local directory and could not be loaded from the Hugging "
        f"Face hub ({reason}): pass a local path, or check the hub id and the network"
    )


def _processor_hint(model: str, model_type: str) -> str:
    if model_type.startswith("qwen"):
        why = (
            "Qwen-VL processors need a video processor, and transformers' video processors "
            "need torchvision, which is not installed"
        )
    else:
        why = "AutoProcessor returned no image processor"
    return (
        f"model '{model}' ({model_type}) cannot be used for images here: {why}. Use an "
        "Idefics3/SmolVLM checkpoint, install a working torchvision, or serve the model "
        "with vLLM"
    )


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Token ids that end a turn: the generation config's, else the tokenizer's EOS."""
    configured = getattr(model.generation_config, "eos_token_id", None)
    if configured is None:
        configured = tokenizer.eos_token_id
    ids = {configured} if isinstance(configured, int) else set(configured or ())
    if not ids:
        raise EndpointError("the model defines no end-of-sequence token: cannot stop generation")
    return ids


def conversation(
    messages: Sequence[Message], multimodal: bool, model_id: str
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Chat-template messages (images as parts before the text) and the PIL images in order."""
    from PIL import Image

    conversation: list[dict[str, Any]] = []
    images: list[Any] = []
    for i, message in enumerate(messages):
        if message.images and not multimodal:
            raise InputError(
                f"model '{model_id}' is text-only but message {i} has "
                f"{len(message.images)} image(s)"
            )
        for j, frame in enumerate(message.images):
            if not (
                isinstance(frame, np.ndarray)
                and frame.dtype == np.uint8
                and frame.ndim == 3
                and frame.shape[2] == 3
            ):
                got = getattr(frame, "shape", type(frame).__name__)
                raise InputError(
                    f"message {i} image {j} must be an RGB uint8 (H, W, 3) array, "
                    f"got {got} {getattr(frame, 'dtype', '')}".rstrip()
                )
            images.append(Image.fromarray(np.ascontiguousarray(frame)))
        if multimodal:
            content: Any = [{"type": "image"} for _ in message.images]
            content.append({"type": "text", "text": message.text})
        else:
            content = message.text
        conversation.append({"role": message.role, "content": content})
    return conversation, images
