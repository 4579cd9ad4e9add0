"""Contract of tools/vlm.py (the OpenAI dialect) against a real vLLM server.

Only the 5xx retry test uses a stand-in HTTP server: vLLM cannot be made to answer 503 on cue.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from vara.errors import EndpointError
from vara.prompts.loader import load_labelset, load_prompt
from vara.tools.chat import Message
from vara.tools.reason import answer_schema, parse_answer
from vara.tools.vlm import EndpointUnreachable, OpenAIServer

KINETICS = load_labelset("kinetics-sample")


def _frames(n, h=48, w=64):
    rng = np.random.default_rng(n)
    return tuple(rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n))


@pytest.fixture(scope="module")
def client(vllm_server):
    c = OpenAIServer(vllm_server.url, max_retries=1, backoff_s=0.05)
    yield c
    c.close()


def test_discovers_the_served_model(client, vllm_server):
    assert client.model_id == vllm_server.model_name


def test_cache_identity_names_backend_and_weights(client, tiny_vlm_dir, tmp_path):
    """The served model's captions are keyed apart from the same checkpoint run in-process,
    and from a checkpoint rebuilt at the same path."""
    import os

    from vara.tools.chat import weights_fingerprint
    from vara.tools.local_engine import LocalEngine

    served = json.loads(client.cache_identity.removeprefix("vllm:"))
    assert client.cache_identity.startswith("vllm:")
    assert served["model"] == client.model_id and served["root"] == str(tiny_vlm_dir)
    assert served["weights"] == weights_fingerprint(str(tiny_vlm_dir)) is not None
    engine = LocalEngine(tiny_vlm_dir)
    try:
        assert engine.cache_identity.startswith("transformers:")
        assert (
            json.loads(engine.cache_identity.removeprefix("transformers:"))["weights"]
            == (served["weights"])
        )
    finally:
        engine.close()
    assert weights_fingerprint("HuggingFaceTB/SmolVLM-256M-Instruct") is None  # a hub id
    copy = tmp_path / "m"
    copy.mkdir()
    (copy / "model.safetensors").write_bytes(b"x" * 10)
    before = weights_fingerprint(str(copy))
    os.utime(copy / "model.safetensors", ns=(1, 1))  # retrained: the same size, a new time
    assert weights_fingerprint(str(copy)) != before


def test_text_and_images(client):
    text = client.complete([Message("user", "hello")], max_tokens=8)
    assert text.finish_reason in {"stop", "length"} and text.completion_tokens <= 8
    with_images = client.complete([Message("user", "describe", images=_frames(3))], max_tokens=8)
    # Each tiny-VLM image costs a fixed number of prompt tokens: the frames really went in.
    assert with_images.prompt_tokens > text.prompt_tokens + 3 * 4


def test_structured_answer_is_schema_valid(client):
    template = load_prompt("direct.v1").schema
    refs = ("t=0.25s", "t=0.75s")
    schema = answer_schema(template, KINETICS, refs)
    for k in range(5):
        done = client.complete(
            [Message("user", "label this", images=_frames(2 + k % 2))],
            json_schema=schema,
            max_tokens=768,
        )
        answer = parse_answer(done.text, schema, KINETICS)  # raises if invalid
        assert len(answer.labels) == 1 and answer.labels[0] in KINETICS.names


def test_too_many_images_names_the_server_flag(client, vllm_server):
    with pytest.raises(EndpointError) as info:
        client.complete([Message("user", "x", images=_frames(17, 16, 16))], max_tokens=4)
    msg = str(info.value)
    assert "--limit-mm-per-prompt" in msg and vllm_server.url in msg and "17" in msg
    assert "\n" not in msg


def test_prompt_longer_than_the_context_names_the_fix(client):
    with pytest.raises(EndpointError, match="--max-model-len"):
        client.complete([Message("user", "word " * 5000)], max_tokens=4)


def test_unknown_model_is_named(vllm_server):
    c = OpenAIServer(vllm_server.url, "no-such-model", max_retries=0)
    with pytest.raises(EndpointError, match="no-such-model"):
        c.complete([Message("user", "hi")], max_tokens=2)


def test_concurrent_requests(client):
    with ThreadPoolExecutor(8) as pool:
        done = list(
            pool.map(lambda i: client.complete([Message("user", f"n{i}")], max_tokens=4), range(16))
        )
    assert len(done) == 16


def test_unreachable_server_is_one_line_naming_the_url():
    url = "http://127.0.0.1:9/v1"  # discard port: nothing listens
    with pytest.raises(EndpointUnreachable) as info:
        OpenAIServer(url, max_retries=1, backoff_s=0.01)  # model discovery is the first request
    assert url in str(info.value) and "\n" not in str(info.value)
    c = OpenAIServer(url, "m", max_retries=2, backoff_s=0.01)
    with pytest.raises(
        EndpointUnreachable, match="cannot reach a model server at http://127.0.0.1:9/v1"
    ):
        c.complete([Message("user", "hi")])


class _Flaky(BaseHTTPRequestHandler):
    failures_left = 0
    calls = 0

    def do_POST(self):  # noqa: N802 - http.server naming
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "overloaded"}}')
            return
        body = {"model": "m", "choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    _Flaky.calls = 0
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_5xx_is_retried_with_backoff(flaky_url):
    _Flaky.failures_left = 2
    c = OpenAIServer(flaky_url, "m", max_retries=2, backoff_s=0.01)
    assert c.complete([Message("user", "hi")]).text == "ok"
    assert _Flaky.calls == 3


def test_5xx_gives_up_after_the_retries(flaky_url):
    _Flaky.failures_left = 10
    c = OpenAIServer(flaky_url, "m", max_retries=1, backoff_s=0.01)
    with pytest.raises(
        EndpointError, match=r"HTTP 503: overloaded \(after 2 tries; raise vlm.max_retries"
    ):
        c.complete([Message("user", "hi")])
    assert _Flaky.calls == 2
