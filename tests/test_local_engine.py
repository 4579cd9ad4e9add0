"""LocalEngine on the tiny VLM: schema-constrained JSON, sampling, text-only models,
thread safety and the errors a user sees."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import numpy as np
import pytest
import torch

from vara.errors import EndpointError, InputError
from vara.testing.tiny_vlm import image_tokens_per_image
from vara.tools.chat import Message
from vara.tools.local_engine import LocalEngine

LABELS = ["ventilation", "stimulation", "suction", "none"]
# No maxLength: xgrammar's maxLength can emit raw control characters (docs/cpu-notes.md).
SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": LABELS},
        "labels": {"type": "array", "items": {"type": "string", "enum": LABELS}, "maxItems": 4},
        "evidence": {"type": "string", "pattern": "^t=[0-9]{1,3}\\.[0-9]{2}s [a-z ]{1,30}$"},
    },
    "required": ["label", "labels", "evidence"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def engine(tiny_vlm_dir):
    engine = LocalEngine(tiny_vlm_dir)
    yield engine
    engine.close()


def _frames(rng, n):
    return tuple(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(n))


@pytest.mark.parametrize("n_images", [0, 1, 5])
def test_json_schema_answers_validate(engine, n_images):
    rng = np.random.default_rng(n_images)
    texts = []
    for i in range(10):
        messages = [
            Message("system", "You label newborn resuscitation clips. Answer in JSON."),
            Message("user", f"Clip {i}: which activities happen?", images=_frames(rng, n_images)),
        ]
        reply = engine.complete(messages, json_schema=SCHEMA, max_tokens=160)
        jsonschema.validate(json.loads(reply.text), SCHEMA)
        assert reply.finish_reason == "stop"
        assert reply.model == engine.model_id
        assert reply.completion_tokens and reply.prompt_tokens and reply.latency_s > 0
        texts.append(reply.text)
    assert len(set(texts)) > 1, "different prompts should not all give one answer"


def test_images_reach_the_model(engine):
    rng = np.random.default_rng(0)
    text_only = engine.complete([Message("user", "Describe.")], max_tokens=1)
    with_images = engine.complete(
        [Message("user", "Describe.", images=_frames(rng, 2))], max_tokens=1
    )
    # Each image expands to <fake_token_around_image><global-img> + 4 <image> + <fake...>.
    per_image = image_tokens_per_image(56) + 3
    assert with_images.prompt_tokens - text_only.prompt_tokens == 2 * per_image


def test_greedy_is_repeatable_and_length_is_reported(engine):
    messages = [Message("user", "What happens in the video?")]
    a = engine.complete(messages, max_tokens=6)
    b = engine.complete(messages, max_tokens=6)
    assert a.text == b.text
    assert a.finish_reason == "length" and a.completion_tokens == 6


def test_sampling_varies(engine):
    messages = [Message("user", "What happens in the video?")]
    torch.manual_seed(0)
    texts = {engine.complete(messages, max_tokens=12, temperature=1.0).text for _ in range(4)}
    assert len(texts) > 1


def test_concurrent_calls_match_sequential(engine):
    rng = np.random.default_rng(7)
    batches = [[Message("user", f"Clip {i}?", images=_frames(rng, i % 3))] for i in range(6)]
    sequential = [engine.complete(m, json_schema=SCHEMA, max_tokens=160).text for m in batches]
    with ThreadPoolExecutor(max_workers=3) as pool:
        parallel = list(
            pool.map(lambda m: engine.complete(m, json_schema=SCHEMA, max_tokens=160).text, batches)
        )
    assert parallel == sequential


def test_rejects_bad_images(engine):
    with pytest.raises(InputError, match="RGB uint8"):
        engine.complete([Message("user", "x", images=(np.zeros((8, 8, 3), np.float32),))])
    with pytest.raises(InputError, match="RGB uint8"):
        engine.complete([Message("user", "x", images=(np.zeros((8, 8), np.uint8),))])


def test_text_only_model_falls_back_to_causal_lm(tiny_vlm_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_vlm_dir, local_files_only=True)
    torch.manual_seed(0)
    llm = LlamaForCausalLM(AutoConfig.from_pretrained(tiny_vlm_dir).text_config)
    llm.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    engine = LocalEngine(tmp_path)
    assert not engine.multimodal
    reply = engine.complete(
        [Message("user", "Which activity?")], json_schema=SCHEMA, max_tokens=160
    )
    jsonschema.validate(json.loads(reply.text), SCHEMA)
    with pytest.raises(InputError, match="text-only"):
        engine.complete([Message("user", "x", images=_frames(np.random.default_rng(0), 1))])


def test_load_errors_name_the_model(tmp_path):
    with pytest.raises(InputError, match=f"'{tmp_path}' has no config.json"):
        LocalEngine(tmp_path)
    with pytest.raises(InputError, match="'/no/such/model' does not exist"):
        LocalEngine("/no/such/model")
    # conftest sets HF_HUB_OFFLINE=1: a hub id fails at once with the fix in the message.
    with pytest.raises(EndpointError, match="'someorg/some-vlm' not found locally.*HF_HUB_OFFLINE"):
        LocalEngine("someorg/some-vlm")
    # Deferred (what `vara run --vlm-model` makes): the path checks run now, loading later.
    with pytest.raises(InputError, match="does not exist"):
        LocalEngine("/no/such/model", lazy=True)
    deferred = LocalEngine("someorg/some-vlm", lazy=True)
    with pytest.raises(EndpointError, match="'someorg/some-vlm' not found locally"):
        deferred.load()


def test_loading_prints_no_spurious_config_warning(tiny_vlm_dir):
    # transformers diffs the config against Idefics3's default, whose pad_token_id lies
    # outside its default vocabulary; the checkpoint's own config is fine. It warns once per
    # process (this one has built the model already): load in a fresh one.
    import os
    import subprocess
    import sys

    code = f"from vara.tools.local_engine import LocalEngine; LocalEngine({str(tiny_vlm_dir)!r})"
    # With its loading bar (a CLI test in this process may have set --quiet's variable).
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    err = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stderr
    assert "pad_token_id must be" not in err and "Loading weights" in err, err


def test_closed_engine_raises(tiny_vlm_dir):
    engine = LocalEngine(tiny_vlm_dir)
    engine.close()
    with pytest.raises(EndpointError, match="closed"):
        engine.complete([Message("user", "x")])
