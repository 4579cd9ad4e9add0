"""The one module that speaks the OpenAI-compatible chat dialect of a vLLM server.

``OpenAIServer`` implements ``vara.tools.chat.ChatModel`` over HTTP: frames go as JPEG data
URLs, structured output as ``response_format={"type": "json_schema", ...}`` (vLLM compiles it
to a grammar; ``guided_json`` was removed in vLLM 0.12). A semaphore bounds requests in flight;
connection errors, timeouts and 5xx are retried with exponential backoff; everything else maps
to an ``EndpointError`` that says which URL failed and which flag or option fixes it.
``connect`` picks this client when an endpoint has a URL, else the in-process engine.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from PIL import Image

from vara.config import Endpoint
from vara.errors import EndpointError
from vara.tools.chat import ChatModel, Completion, Message

__all__ = [
    "OpenAIServer",
    "EndpointUnreachable",
    "connect",
    "decoding_schema",
    "encode_jpeg",
    "to_openai_messages",
]

_RETRY_STATUS = {500, 502, 503, 504}
# Keywords vLLM's xgrammar backend refuses (HTTP 400) rather than ignores. They are dropped
# from the schema sent for decoding only; tools.reason still validates the answer against
# the full schema, so e.g. a repeated label is caught and re-asked, never accepted.
_UNDECODABLE = ("uniqueItems", "contains", "minContains", "maxContains")
_IMAGE_LIMIT = re.compile(r"at most (\d+) image", re.IGNORECASE)


class EndpointUnreachable(EndpointError):
    """No server answers at the URL: the whole run should stop, not each window fail."""


def encode_jpeg(frame: np.ndarray, quality: int = 90) -> str:
    """RGB uint8 (H, W, 3) -> ``data:image/jpeg;base64,...``."""
    buf = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def decoding_schema(schema: Any) -> Any:
    """``schema`` without the keywords a grammar backend cannot enforce (see _UNDECODABLE)."""
    if isinstance(schema, dict):
        return {k: decoding_schema(v) for k, v in schema.items() if k not in _UNDECODABLE}
    if isinstance(schema, list):
        return [decoding_schema(v) for v in schema]
    return schema


def to_openai_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": encode_jpeg(img)}} for img in m.images
        ]
        parts.append({"type": "text", "text": m.text})
        out.append({"role": m.role, "content": parts})
    return out


class OpenAIServer:
    """A ChatModel backed by an OpenAI-compatible server (vLLM)."""

    def __init__(
        self,
        url: str,
        model: str | None = None,
        *,
        api_key: str = "EMPTY",
        timeout_s: float = 120.0,
        max_concurrency: int = 8,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ):
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            headers={"Authorization": f"Bearer {api_key}"},
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self.model_id = model or self._only_served_model()

    def _only_served_model(self) -> str:
        models = [m["id"] for m in self._request("GET", "/models").get("data", [])]
        if len(models) != 1:
            raise EndpointError(
                f"server {self.url} serves {len(models)} models {models}; name one with --vlm-model"
            )
        return models[0]

    def complete(
        self,
        messages: Sequence[Message],
        *,
        json_schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Completion:
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": to_openai_messages(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": decoding_schema(json_schema),
                    "strict": True,
                },
            }
        n_images = sum(len(m.images) for m in messages)
        start = time.perf_counter()
        reply = self._request("POST", "/chat/completions", json=body, n_images=n_images)
        latency = time.perf_counter() - start
        try:
            choice = reply["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise EndpointError(
                f"server {self.url} returned a reply without choices[0].message.content: "
                f"{str(reply)[:200]}"
            ) from None
        usage = reply.get("usage") or {}
        return Completion(
            text=text,
            model=reply.get("model", self.model_id),
            latency_s=latency,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def _request(self, method: str, path: str, *, n_images: int = 0, **kw: Any) -> dict[str, Any]:
        last: Exception | None = None
        with self._slots:
            for attempt in range(self._max_retries + 1):
                if attempt:
                    time.sleep(self._backoff_s * 2 ** (attempt - 1))
                try:
                    resp = self._client.request(method, path, **kw)
                except httpx.TransportError as exc:  # refused, reset, timed out: worth a retry
                    last = exc
                    continue
                if resp.status_code in _RETRY_STATUS:
                    last = EndpointError(_describe(self.url, resp, n_images))
                    continue
                if resp.status_code >= 400:
                    raise EndpointError(_describe(self.url, resp, n_images))
                try:
                    return resp.json()
                except ValueError:
                    raise EndpointError(
                        f"server {self.url}{path} replied with non-JSON: {resp.text[:200]!r}"
                    ) from None
        tries = self._max_retries + 1
        if isinstance(last, httpx.TimeoutException):
            raise EndpointError(
                f"server {self.url} did not answer within the timeout ({tries} tries); raise "
                f"timeout_s (e.g. vlm.timeout_s=600) or lower frames/concurrency"
            )
        if isinstance(last, EndpointError):
            raise EndpointError(f"{last} (after {tries} tries)")
        raise EndpointUnreachable(
            f"cannot reach a model server at {self.url} ({type(last).__name__}); start one "
            f"(`vara serve MODEL`, or `vllm serve MODEL`) or fix --vlm-url/--llm-url"
        )

    def close(self) -> None:
        self._client.close()


def _describe(url: str, resp: httpx.Response, n_images: int) -> str:
    """One line for an HTTP error reply, with the fix where the cause is known."""
    try:
        detail = resp.json()
        msg = detail.get("error", {}).get("message") or detail.get("message") or str(detail)
    except ValueError:
        msg = resp.text
    msg = " ".join(str(msg).split())[:300]
    m = _IMAGE_LIMIT.search(msg)
    if m:
        return (
            f"server {url} accepts at most {m.group(1)} images per prompt but the request had "
            f"{n_images}; restart vLLM with --limit-mm-per-prompt '{{\"image\": {n_images}}}' "
            f"or send fewer frames (sampler.n_frames / frames_per_caption)"
        )
    if "maximum context length" in msg or "max_model_len" in msg or "too long" in msg:
        return (
            f"server {url}: the prompt does not fit the model's context ({msg}); restart vLLM "
            f"with a larger --max-model-len or send fewer/smaller frames (sampler.max_side)"
        )
    if resp.status_code == 404 and "model" in msg.lower():
        return f"server {url}: {msg}; check --vlm-model/--llm-model against GET {url}/models"
    return f"server {url} answered HTTP {resp.status_code}: {msg}"


def connect(endpoint: Endpoint) -> ChatModel:
    """A server client when the endpoint has a URL, else the in-process engine."""
    if endpoint.url:
        return OpenAIServer(
            endpoint.url,
            endpoint.model,
            api_key=endpoint.api_key,
            timeout_s=endpoint.timeout_s,
            max_concurrency=endpoint.max_concurrency,
            max_retries=endpoint.max_retries,
        )
    if not endpoint.model:
        raise EndpointError("no model given: pass --vlm-model (hub id or local path) or --vlm-url")
    from vara.tools.local_engine import LocalEngine

    return LocalEngine(endpoint.model)
