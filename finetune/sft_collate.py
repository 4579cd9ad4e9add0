"""What the LVLM SFT recipe feeds its model: one training window (``Example``) and the
collate function (``SftCollate``) that renders it as inference renders it and tokenizes it.

The prompt is the strategy's own (``model.prompt``), rendered and templated as inference
renders it (``tools.turns.chat_turns``, ``tools.local_engine.conversation``, the model's chat
template): the frames as images (frames mode) or the action narrative of the per-frame tags,
text only (tokens mode). The labels keep only the answer and the end-of-turn tokens, so the
loss is on the answer alone. ``finetune/lvlm_sft.py`` trains with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vara.prompts.loader import PromptTemplate
from vara.tools.local_engine import conversation
from vara.tools.narrative import narrative_items
from vara.tools.turns import chat_turns
from vara.types import Clip, LabelSet

__all__ = ["Example", "SftCollate"]


@dataclass(frozen=True)
class Example:
    """One training window: what the prompt says of it, and the answer to learn."""

    clip: Clip
    timestamps_s: tuple[float, ...]
    answer: str
    tags: tuple[dict[str, Any], ...] | None = None  # tokens mode: one tag set per frame


class SftCollate:
    """(frames, example index) items -> {"inputs": ids, mask, pixels, labels; "y": indices}.
    The prompt is the strategy's, rendered and templated as inference renders it; ``labels``
    keep only the answer and the end-of-turn tokens."""

    def __init__(self, processor: Any, prompt: PromptTemplate, labelset: LabelSet, examples):
        self.processor, self.prompt, self.labelset = processor, prompt, labelset
        self.examples: list[Example] = examples
        self.tokenizer = processor.tokenizer

    def texts(self, frames: np.ndarray, ex: Example) -> tuple[str, str, list[Any]]:
        """(the templated prompt, the answer as the template closes it, the images)."""
        if ex.tags is None:
            rendered = self.prompt.render(
                labelset=self.labelset,
                n_frames=len(frames),
                start_s=ex.clip.start_s,
                end_s=ex.clip.end_s,
                timestamps=list(ex.timestamps_s),
            )
            turns = chat_turns(rendered.system, rendered.user, list(frames))
        else:  # the narrative, as the semantic-tokens graph renders it: text only
            items, spans = narrative_items(ex.timestamps_s, ex.tags)
            rendered = self.prompt.render(
                labelset=self.labelset,
                frames=items,
                spans=spans,
                start_s=ex.clip.start_s,
                end_s=ex.clip.end_s,
            )
            turns = chat_turns(rendered.system, rendered.user)
        conv, images = conversation(turns, True, "lvlm_sft")
        template = self.processor.apply_chat_template
        prompt = template(conv, add_generation_prompt=True, tokenize=False)
        reply = [{"role": "assistant", "content": [{"type": "text", "text": ex.answer}]}]
        full = template([*conv, *reply], tokenize=False)
        tail = full[len(prompt) :] if full.startswith(prompt) else ex.answer
        if ex.answer not in tail:  # a template that rewrites the reply: answer + EOS
            tail = ex.answer + (self.tokenizer.eos_token or "")
        return prompt, tail, images

    def __call__(self, items: Sequence[tuple[np.ndarray, Any]]) -> dict[str, Any]:
        prompts, tails, images = [], [], []
        for frames, i in items:
            prompt, tail, imgs = self.texts(frames, self.examples[int(i)])
            prompts.append(prompt + tail)
            tails.append(tail)
            images.append(imgs)
        self.tokenizer.padding_side = "right"
        pictures = images if any(images) else None  # tokens mode: text only
        enc = self.processor(text=prompts, images=pictures, padding=True, return_tensors="pt")
        labels = torch.full_like(enc["input_ids"], -100)
        lengths = enc["attention_mask"].sum(dim=1)
        for row, tail in enumerate(tails):
            n = len(self.tokenizer(tail, add_special_tokens=False)["input_ids"])
            end = int(lengths[row])
            labels[row, end - n : end] = enc["input_ids"][row, end - n : end]
        inputs = {k: v for k, v in enc.items() if isinstance(v, torch.Tensor)}
        inputs["labels"] = labels
        return {"inputs": inputs, "y": torch.as_tensor([int(i) for _, i in items])}
