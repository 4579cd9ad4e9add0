"""The chat turns a prompt becomes: one place, so the graphs and the generative fine-tuning
recipe (``finetune/lvlm_sft.py``) send a model exactly the same messages."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vara.tools.chat import Message

__all__ = ["chat_turns"]


def chat_turns(system: str, user: str, images: Sequence[np.ndarray] = ()) -> list[Message]:
    """A system turn (when the prompt has one) and a user turn with the images first."""
    head = [Message("system", system)] if system else []
    return [*head, Message("user", user, images=tuple(images))]
