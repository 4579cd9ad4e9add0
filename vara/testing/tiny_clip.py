"""Tiny random-weight CLIP and SigLIP models, built offline, for tests and the quickstart.

``build_tiny_clip(path, kind="clip" | "siglip")`` writes a checkpoint of about 100 thousand
parameters (two-layer text and vision towers, 32 x 32 images) with a byte-level BPE
tokenizer trained here on the label names and templates vara uses, and the PIL image
processor (no torchvision). ``AutoModel`` / ``AutoProcessor`` load it from the directory,
as they would a real checkpoint. Its weights are random: scores mean nothing, but batching,
pooling, the template ensemble and the softmax / sigmoid heads run for real.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["build_tiny_clip"]

HIDDEN, LAYERS, HEADS = 32, 2, 2
IMAGE, PATCH, TEXT_LEN = 32, 8, 64
PAD, BOS, EOS = "<|pad|>", "<|startoftext|>", "<|endoftext|>"


def _corpus() -> list[str]:
    from vara.prompts.loader import list_labelsets, load_labelset

    lines = ["a video of a person", "a photo of someone", "a video frame showing"]
    for name in list_labelsets():
        for label in load_labelset(name).labels:
            lines += [label.name, label.description, *label.synonyms]
    return lines * 4


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=800,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, 1), (EOS, 2)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=TEXT_LEN,
    )


def _towers(vocab: int) -> tuple[dict, dict]:
    text = dict(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        max_position_embeddings=TEXT_LEN,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    vision = dict(
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    return text, vision


def build_tiny_clip(path: str | Path, *, kind: str = "clip", seed: int = 0) -> Path:
    """Write a tiny random CLIP (``kind="clip"``) or SigLIP (``"siglip"``) to ``path``."""
    import torch
    import transformers as tf

    if kind not in ("clip", "siglip"):
        raise ValueError(f"kind must be clip or siglip, got {kind!r}")
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    text, vision = _towers(len(tokenizer))
    if kind == "clip":
        model = tf.CLIPModel(
            tf.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
        )
        images = _pil(tf, "CLIPImageProcessor")(
            size={"shortest_edge": IMAGE}, crop_size={"height": IMAGE, "width": IMAGE}
        )
        processor = tf.CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    else:
        model = tf.SiglipModel(tf.SiglipConfig(text_config=text, vision_config=vision))
        images = _pil(tf, "SiglipImageProcessor")(size={"height": IMAGE, "width": IMAGE})
        processor = tf.SiglipProcessor(image_processor=images, tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _pil(tf, name: str):
    """The PIL image processor (transformers' default one needs torchvision)."""
    return getattr(tf, f"{name}Pil", None) or getattr(tf, name)
