"""The tiny offline VLM: builds fast and deterministically, reloads in transformers, and
its chat template renders images, tools and hermes tool calls."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from vara.testing.tiny_vlm import IMAGE_TOKEN, build_tiny_vlm, image_tokens_per_image


def _digests(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_build_is_deterministic(tmp_path):
    a = build_tiny_vlm(tmp_path / "a", seed=0)
    b = build_tiny_vlm(tmp_path / "b", seed=0)
    c = build_tiny_vlm(tmp_path / "c", seed=1)
    assert _digests(a) == _digests(b)
    assert _digests(a)["model.safetensors"] != _digests(c)["model.safetensors"]
    assert _digests(a)["tokenizer.json"] == _digests(c)["tokenizer.json"]


def test_rejects_image_size_that_does_not_tile(tmp_path):
    with pytest.raises(ValueError, match="multiple of 28"):
        build_tiny_vlm(tmp_path, image_size=50)


def test_text_tokens_sets_the_context(tmp_path):
    path = build_tiny_vlm(tmp_path / "long", text_tokens=4096, max_images=2)
    config = json.loads((path / "config.json").read_text())
    images = 2 * (image_tokens_per_image(56) + 3)
    assert config["text_config"]["max_position_embeddings"] == 4096 + images
    assert json.loads((path / "tokenizer_config.json").read_text())["model_max_length"] == 4096
    with pytest.raises(ValueError, match="text_tokens"):
        build_tiny_vlm(tmp_path / "short", text_tokens=100)


@pytest.fixture(scope="module")
def loaded(tiny_vlm_dir):
    processor = AutoProcessor.from_pretrained(tiny_vlm_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir, local_files_only=True)
    return processor, model.eval()


def test_reloads_as_small_idefics3(loaded):
    processor, model = loaded
    assert type(model).__name__ == "Idefics3ForConditionalGeneration"
    assert type(processor).__name__ == "Idefics3Processor"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    text = model.config.text_config
    assert text.hidden_size // text.num_attention_heads >= 32  # vLLM's CPU attention needs it
    assert 1000 <= len(processor.tokenizer) <= 2000


def test_generates_with_images(loaded):
    processor, model = loaded
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (40, 72, 3), dtype=np.uint8)) for _ in range(3)]
    conversation = [
        {
            "role": "user",
            "content": [
                *({"type": "image"} for _ in images),
                {"type": "text", "text": "What is happening?"},
            ],
        }
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt.count(IMAGE_TOKEN) == 3
    inputs = processor(text=[prompt], images=images, return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert int((inputs["input_ids"] == image_id).sum()) == 3 * image_tokens_per_image(56)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8  # random weights rarely stop early


def test_chat_template_string_content_and_system(loaded):
    processor, _ = loaded
    prompt = processor.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        add_generation_prompt=True,
    )
    assert prompt == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_template_renders_hermes_tools_and_calls(loaded):
    processor, _ = loaded
    tool = {
        "type": "function",
        "function": {
            "name": "look_again",
            "description": "Sample more frames",
            "parameters": {"type": "object", "properties": {"start_s": {"type": "number"}}},
        },
    }
    messages = [
        {"role": "user", "content": "Look again."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "type": "function",
                    "function": {"name": "look_again", "arguments": {"start_s": 1.5}},
                }
            ],
        },
        {"role": "tool", "content": "a nurse holds a mask"},
    ]
    prompt = processor.apply_chat_template(messages, tools=[tool], add_generation_prompt=True)
    tools_block = re.search(r"<tools>\n(.*)\n</tools>", prompt).group(1)
    assert json.loads(tools_block) == tool
    call = re.search(r"<\|im_start\|>assistant\n<tool_call>\n(.*)\n</tool_call>", prompt).group(1)
    assert json.loads(call) == {"name": "look_again", "arguments": {"start_s": 1.5}}
    assert "<|im_start|>user\n<tool_response>\na nurse holds a mask\n</tool_response>" in prompt
    # The parser in vLLM finds these as whole tokens.
    tokenizer = processor.tokenizer
    assert len(tokenizer.tokenize("<tool_call>")) == 1
    assert len(tokenizer.tokenize("</tool_call>")) == 1
