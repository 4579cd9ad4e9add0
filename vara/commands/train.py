"""``vara finetune CONFIG`` (train a classifier from a recipe), ``vara tiny-vlm DIR`` and
``vara tiny-clip DIR`` (random test models built offline)."""

from __future__ import annotations

import argparse
import json

from vara.commands.common import EXIT_OK

__all__ = ["add"]


def _cmd_finetune(args: argparse.Namespace) -> int:
    from vara.finetune.recipes import run_config

    out = run_config(args.config, args.overrides, progress=not args.quiet)
    card = json.loads((out / "run_card.json").read_text())
    final = card.get("final") or {}
    if "val_macro_f1" in final:
        score = f"val macro-F1 {final['val_macro_f1']:.3f} (at 0.5 / top class)"
    else:  # a generative run: its labels are scored by vara eval
        score = f"val answer loss {final.get('val_loss') or float('nan'):.3f}"
    print(
        f"run directory {out}: {card['data']['n_train']} train / {card['data']['n_val']} val "
        f"windows, {score}, {card['wall_s']:.1f} s"
    )
    if (out / "sft.json").exists():
        _print_sft_commands(out, json.loads((out / "sft.json").read_text()))
        return EXIT_OK
    info = json.loads((out / "classifier.json").read_text())
    if info.get("multi_label", True):  # single-label sets take the top class: nothing tuned
        print(
            "val.jsonl holds the windows the thresholds were tuned on: its scores are "
            "optimistic; evaluate on a manifest of other videos for an unbiased figure"
        )
    sampling = f"--frames {info['n_frames']}"
    if info.get("max_side"):
        sampling += f" --max-side {info['max_side']}"
    if info["kind"] == "clip-noise":  # beside zero-shot CLIP, the same checkpoint
        strategies = f"--strategy clip --strategy clip-noise --set scorer.model={info['backbone']}"
    else:
        strategies = "--strategy classifier"
    print(
        f"evaluate it: vara eval {out / 'val.jsonl'} --labels {_labels_arg(out)} "
        f"{strategies} --set scorer.run_dir={out} {sampling} "
        f"--out {out.parent / (out.name + '-eval')}"
    )
    return EXIT_OK


def _labels_arg(out) -> str:
    """The label set as the run was given it (a packaged name or a YAML path), so the printed
    command works for either."""
    import yaml

    return yaml.safe_load((out / "config.yaml").read_text())["data"]["labels"]


def _print_sft_commands(out, info: dict) -> None:
    """How to serve the adapter with vLLM, and evaluate it served or in-process."""
    name = out.name.replace(" ", "-")
    sampling = f"--frames {info['n_frames']} --max-side {info['max_side']}"
    evaluate = f"vara eval {out / 'val.jsonl'} --labels {_labels_arg(out)} --strategy direct"
    print(f"serve it: vara serve {info['backbone']} --lora {name}={out / 'adapter'}")
    print(
        f"evaluate it served: {evaluate} --vlm-url http://127.0.0.1:8000/v1 "
        f"--set vlm.model={name} {sampling} --out {out.parent / (out.name + '-eval')}"
    )
    print(
        f"or in-process: {evaluate} --vlm-model {info['backbone']} --adapter {out / 'adapter'} "
        f"{sampling} "
        f"--out {out.parent / (out.name + '-eval')}"
    )


def _cmd_tiny_vlm(args: argparse.Namespace) -> int:
    from vara.testing import build_tiny_vlm

    print(build_tiny_vlm(args.dir))
    return EXIT_OK


def _cmd_tiny_clip(args: argparse.Namespace) -> int:
    from vara.testing import build_tiny_clip

    print(build_tiny_clip(args.dir, kind="siglip" if args.siglip else "clip"))
    return EXIT_OK


def add(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser(
        "finetune",
        help="train a model from a recipe (LoRA classifier, TimeSformer, CLIP noise, LVLM SFT)",
    )
    s.add_argument(
        "config",
        help="packaged config (lora_classifier, timesformer, clip_noise, lvlm_sft) or a .yaml",
    )
    s.add_argument("overrides", nargs="*", help="key.sub=value, e.g. data.manifest=labels.csv")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_finetune)

    s = sub.add_parser("tiny-vlm", help="build a tiny random-weight VLM offline (for smoke tests)")
    s.add_argument("dir", help="output directory")
    s.set_defaults(func=_cmd_tiny_vlm)

    s = sub.add_parser(
        "tiny-clip", help="build a tiny random-weight CLIP (or SigLIP) offline (for smoke tests)"
    )
    s.add_argument("dir", help="output directory")
    s.add_argument("--siglip", action="store_true", help="a SigLIP (sigmoid head) instead")
    s.set_defaults(func=_cmd_tiny_clip)
