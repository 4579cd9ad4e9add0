"""The one module that speaks the OpenAI-compatible chat dialect of a vLLM server.

``OpenAIServer`` implements ``vara.tools.chat.ChatModel`` over HTTP: frames go as JPEG data
URLs, structured output as ``response_format={"type": "json_schema", ...}`` (vLLM compiles it
to a grammar; ``guided_json`` was removed in vLLM 0.12), tools as ``tools`` + ``tool_choice``
(a tool's name becomes the named form; vLLM needs ``--enable-auto-tool-choice
--tool-call-parser ...`` for "auto"). A semaphore bounds requests in flight;
connection errors, timeouts, replies cut short (a broken connection, or a 200 whose body is
not JSON) and 5xx are retried with exponential backoff within ``max_retries``; everything
else maps to an ``EndpointError`` that says which URL failed and which flag or option fixes
it. Only a server that cannot be connected to at all is ``EndpointUnreachable`` (the run
stops: nothing can finish); any other failure fails its window alone.
``vara.tools.transport.Transport`` makes ONE try of one request against one server and says
whether another try may help (``RetryableError``); ``OpenAIServer`` retries on its one
server, and ``vara.tools.endpoints.EndpointPool`` on the next of several replicas. Both are
``ServedChat``s: ``complete`` and ``cache_identity`` are written once there, over each one's
way of reaching a server, and a completion is built, sent and parsed by ``chat_completion``.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from vara.errors import EndpointError, EndpointUnreachable, InputError
from vara.tools.chat import (
    TOOL_CHOICES,
    Completion,
    Message,
    ToolCall,
    weights_fingerprint,
)
from vara.tools.transport import RetryableError, Transport, gave_up

__all__ = [
    "OpenAIServer",
    "ServedChat",
    "EndpointUnreachable",
    "chat_body",
    "chat_completion",
    "decoding_schema",
    "encode_jpeg",
    "only_served_model",
    "parse_completion",
    "parse_tool_calls",
    "served_identity",
    "to_openai_messages",
    "tool_request",
]

# Keywords vLLM's xgrammar backend refuses (HTTP 400) rather than ignores. They are dropped
# from the schema sent for decoding only; tools.reason still validates the answer against
# the full schema, so e.g. a repeated label is caught and re-asked, never accepted.
_UNDECODABLE = ("uniqueItems", "contains", "minContains", "maxContains")


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
        if m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.text})
            continue
        if m.tool_calls:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                }
                for c in m.tool_calls
            ]
            out.append({"role": m.role, "content": m.text or None, "tool_calls": calls})
            continue
        if not m.images:
            out.append({"role": m.role, "content": m.text})
            continue
        parts: list[dict[str, Any]] = [
            {"type": "image_url", "image_url": {"url": encode_jpeg(img)}} for img in m.images
        ]
        parts.append({"type": "text", "text": m.text})
        out.append({"role": m.role, "content": parts})
    return out


def chat_body(
    model: str,
    messages: Sequence[Message],
    *,
    json_schema: dict[str, Any] | None = None,
    max_tokens: int = 256,
    temperature: float = 0.0,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | None = None,
) -> dict[str, Any]:
    """The /chat/completions request body ``OpenAIServer.complete`` sends."""
    body: dict[str, Any] = {
        "model": model,
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
    if tools:
        body.update(tool_request(tools, tool_choice))
    elif tool_choice is not None:
        raise InputError(f"tool_choice {tool_choice!r} given without tools")
    return body


def tool_request(tools: list[dict[str, Any]], tool_choice: str | None) -> dict[str, Any]:
    """The ``tools``/``tool_choice`` fields of a request; a tool's name becomes the named form."""
    names = [t.get("function", {}).get("name") for t in tools]
    body: dict[str, Any] = {"tools": tools}
    if tool_choice is None:
        return body
    if tool_choice in TOOL_CHOICES:
        body["tool_choice"] = tool_choice
    elif tool_choice in names:
        body["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
    else:
        raise InputError(
            f"tool_choice {tool_choice!r} is neither one of {list(TOOL_CHOICES)} nor a tool "
            f"offered in this request ({names})"
        )
    return body


def parse_tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """``message.tool_calls`` of a reply; arguments that are not a JSON object become a
    ToolCall with ``error`` set rather than an exception."""
    calls = []
    for i, raw in enumerate(message.get("tool_calls") or (), start=1):
        fn = raw.get("function") or {}
        args, error = _arguments(fn.get("arguments"))
        calls.append(
            ToolCall(str(raw.get("id") or f"call_{i}"), str(fn.get("name") or ""), args, error)
        )
    return tuple(calls)


def _arguments(text: Any) -> tuple[dict[str, Any], str | None]:
    """(arguments, None), or ({}, what is wrong with them)."""
    if text is None or text == "":
        return {}, None
    try:
        args = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        snippet = text[:80].replace("\n", " ")
        return {}, f"arguments are not valid JSON ({exc.msg} at character {exc.pos}): {snippet!r}"
    if not isinstance(args, dict):
        return {}, f"arguments must be a JSON object, got {type(args).__name__}: {str(args)[:80]!r}"
    return args, None


class ServedChat:
    """What both HTTP clients share (``OpenAIServer``, one server; ``EndpointPool``, replicas):
    the ``ChatModel`` methods, over two a subclass gives: ``_models()``, a server's
    GET /models reply, and ``_post(body, n_images)``, a /chat/completions reply with the URL
    that gave it. Subclasses set ``model_id`` and ``_identity = None`` in ``__init__``."""

    supports_tools = True
    model_id: str
    _identity: str | None

    @property
    def cache_identity(self) -> str:
        """See ``served_identity`` (a pool: of the first replica to answer; replicas serve the
        same weights). An unreachable server raises here, as its first request would."""
        if self._identity is None:
            self._identity = served_identity(self._models(), self.model_id)
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
        return chat_completion(
            self._post,
            self.model_id,
            messages,
            json_schema=json_schema,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            tool_choice=tool_choice,
        )

    def _models(self) -> dict[str, Any]:
        raise NotImplementedError

    def _post(self, body: dict[str, Any], n_images: int) -> tuple[dict[str, Any], str]:
        raise NotImplementedError


class OpenAIServer(ServedChat):
    """A ChatModel backed by one OpenAI-compatible server (vLLM)."""

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
        self._transport = Transport(
            url, api_key=api_key, timeout_s=timeout_s, max_concurrency=max_concurrency
        )
        self.url = self._transport.url
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self.model_id = model or only_served_model(self.url, self._models())
        self._identity: str | None = None

    def _models(self) -> dict[str, Any]:
        return self._request("GET", "/models")

    def _post(self, body: dict[str, Any], n_images: int) -> tuple[dict[str, Any], str]:
        reply = self._request("POST", "/chat/completions", json=body, n_images=n_images)
        return reply, self.url

    def _request(self, method: str, path: str, *, n_images: int = 0, **kw: Any) -> dict[str, Any]:
        """One request, retried with backoff on what a retry can fix (``RetryableError``);
        any other error reply at once."""
        last: Exception | None = None
        for attempt in range(self._max_retries + 1):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                return self._transport.send(method, path, n_images=n_images, **kw)
            except RetryableError as exc:
                last = exc.cause
        raise gave_up(self.url, last, self._max_retries + 1)

    def close(self) -> None:
        self._transport.close()


def only_served_model(url: str, models: dict[str, Any]) -> str:
    """The one model a server's GET /models lists; several (or none) must be named."""
    names = [m["id"] for m in models.get("data", [])]
    if len(names) != 1:
        raise EndpointError(
            f"server {url} serves {len(names)} models {names}; name one with --vlm-model"
        )
    return names[0]


def served_identity(models: dict[str, Any], model_id: str) -> str:
    """``vllm:`` + the served name + what the server loaded it from (``root`` in /v1/models)
    and, when that is a directory on this machine, its weights fingerprint."""
    cards = models.get("data", [])
    root = next((c.get("root") for c in cards if c.get("id") == model_id), None)
    parts = {"model": model_id, "root": root}
    parts["weights"] = weights_fingerprint(root) if root else None
    return "vllm:" + json.dumps(parts, sort_keys=True)


def chat_completion(
    send: Callable[[dict[str, Any], int], tuple[dict[str, Any], str]],
    model_id: str,
    messages: Sequence[Message],
    **options: Any,
) -> Completion:
    """One chat completion: the body built from ``messages`` and ``options`` (``chat_body``),
    sent by ``send(body, n_images)`` (one server's retries, or a pool's failover) which gives
    back the reply and the URL that answered, timed and parsed."""
    body = chat_body(model_id, messages, **options)
    n_images = sum(len(m.images) for m in messages)
    start = time.perf_counter()
    reply, url = send(body, n_images)
    return parse_completion(url, reply, model_id, time.perf_counter() - start)


def parse_completion(url: str, reply: dict[str, Any], model_id: str, latency_s: float):
    """A /chat/completions reply as a ``Completion``; a reply without a message is an error."""
    try:
        choice = reply["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise EndpointError(
            f"server {url} returned a reply without choices[0].message: {str(reply)[:200]}"
        ) from None
    usage = reply.get("usage") or {}
    return Completion(
        text=text,
        model=reply.get("model", model_id),
        latency_s=latency_s,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        tool_calls=parse_tool_calls(message),
    )
