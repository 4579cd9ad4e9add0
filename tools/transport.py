"""One try of one HTTP request to one OpenAI-compatible server, and what its failure means.

``Transport`` holds a server's connections and its cap on requests in flight; ``send`` makes
ONE try and raises ``RetryableError`` where another try may help (no connection, a timeout,
a connection broken mid-reply, 5xx, a 200 whose body is not JSON) and ``EndpointError``
for any other error reply, in one line that names the URL and, where the cause is known,
the flag or option that fixes it. ``gave_up`` is the error of a request whose every try
failed. Who tries again is the caller's business: ``vara.tools.vlm.OpenAIServer`` retries on
its one server, ``vara.tools.endpoints.EndpointPool`` on the next of several replicas.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx

from vara.errors import EndpointError, EndpointUnreachable

__all__ = ["RetryableError", "Transport", "gave_up"]

_RETRY_STATUS = {500, 502, 503, 504}
_IMAGE_LIMIT = re.compile(r"at most (\d+) image", re.IGNORECASE)


class RetryableError(EndpointError):
    """One try failed in a way another try may fix: no connection, a timeout, a connection
    broken mid-reply, 5xx, or a 200 whose body is not JSON. ``cause`` is what failed (the
    httpx exception, or an EndpointError describing the reply); ``server_down`` says the
    server looks gone or broken (refused, reset, 5xx) rather than slow or cut short by a
    proxy, so a pool takes that replica out until it answers again."""

    def __init__(self, cause: Exception, *, server_down: bool):
        super().__init__(str(cause))
        self.cause = cause
        self.server_down = server_down

    @property
    def refused(self) -> bool:
        """Nothing accepted the connection: the server is not running (or the URL is wrong)."""
        return isinstance(self.cause, httpx.ConnectError)


class Transport:
    """One server's connections and in-flight cap; ``send`` makes ONE try of one request."""

    def __init__(self, url: str, *, api_key: str, timeout_s: float, max_concurrency: int):
        self.url = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            headers={"Authorization": f"Bearer {api_key}"},
            limits=httpx.Limits(max_connections=max_concurrency),
        )
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def send(self, method: str, path: str, *, n_images: int = 0, **kw: Any) -> dict[str, Any]:
        """The JSON reply; ``RetryableError`` for what a retry can fix, ``EndpointError`` for
        any other error reply."""
        with self._slots:
            try:
                resp = self._client.request(method, path, **kw)
            except httpx.TransportError as exc:  # refused, reset, timed out: worth a retry
                slow = isinstance(exc, httpx.TimeoutException)
                raise RetryableError(exc, server_down=not slow) from None
        if resp.status_code in _RETRY_STATUS:
            error = EndpointError(_describe(self.url, resp, n_images))
            raise RetryableError(error, server_down=True)
        if resp.status_code >= 400:
            raise EndpointError(_describe(self.url, resp, n_images))
        try:
            return resp.json()
        except ValueError:
            error = EndpointError(
                f"server {self.url}{path} replied with non-JSON (cut short?): {resp.text[:120]!r}"
            )
            raise RetryableError(error, server_down=False) from None

    def serves(self, model_id: str | None, timeout_s: float) -> bool:
        """A health check: GET /models answers and lists ``model_id`` (a LoRA adapter is
        listed by its name), so a replica restarted without the adapter stays out."""
        try:
            resp = self._client.get("/models", timeout=timeout_s)
            ids = [card.get("id") for card in resp.json().get("data", [])]
        except (httpx.HTTPError, RuntimeError, ValueError, AttributeError):
            return False  # RuntimeError: the pool closed this client meanwhile
        return resp.status_code == 200 and (model_id is None or model_id in ids)

    def close(self) -> None:
        self._client.close()


def gave_up(url: str, last: Exception | None, tries: int) -> EndpointError:
    """The error for a request whose every try failed: a run stops only when no server
    answers at all (nothing else can finish); otherwise the window fails alone."""
    retries = "raise vlm.max_retries / llm.max_retries (e.g. --set vlm.max_retries=6)"
    if isinstance(last, httpx.TimeoutException):
        return EndpointError(
            f"server {url} did not answer within the timeout ({tries} tries); raise "
            f"timeout_s (e.g. vlm.timeout_s=600) or lower frames/concurrency"
        )
    if isinstance(last, EndpointError):
        return EndpointError(f"{last} (after {tries} tries; {retries})")
    if isinstance(last, httpx.ConnectError):
        return EndpointUnreachable(
            f"cannot reach a model server at {url} ({type(last).__name__}); start "
            f"one (`vara serve MODEL`, or `vllm serve MODEL`) or fix --vlm-url/--llm-url"
        )
    return EndpointError(
        f"server {url}: the connection broke before the reply was complete "
        f"({type(last).__name__}: {last}) in all {tries} tries; check the server and any "
        f"proxy in between, or {retries}"
    )


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
            f"server {url}: the prompt ({n_images} images) does not fit the model's context "
            f"({msg}); restart vLLM with a larger --max-model-len, or send fewer/smaller "
            f"frames (--frames / --max-side, i.e. sampler.n_frames / sampler.max_side) or, for "
            f"a reasoning prompt, fewer or shorter captions (frames_per_caption, "
            f"generation.caption_max_tokens)"
        )
    if resp.status_code == 404 and "model" in msg.lower():
        return f"server {url}: {msg}; check --vlm-model/--llm-model against GET {url}/models"
    return f"server {url} answered HTTP {resp.status_code}: {msg}"
