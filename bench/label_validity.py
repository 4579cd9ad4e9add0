"""How often predictions stay inside the label set, on every path, over the shared clips.

Builds the tiny VLM, starts a vLLM CPU server, and runs `vara run` over all clips of
../shared/data/videos for each (path, strategy, label set): served and in-process,
caption-reason and direct, kinetics-sample and newborn-resuscitation. Reports windows,
predictions, failures, re-asks and the share of predictions whose labels are all in the set
(the answer schema makes anything else impossible; this checks that end to end).

    OMP_NUM_THREADS=1 .venv/bin/python bench/label_validity.py --out /tmp/label_validity.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from vara.cli import main as vara_main
from vara.prompts.loader import load_labelset
from vara.records import read_jsonl
from vara.testing import build_tiny_vlm
from vara.tools.server_options import ServerOptions
from vara.tools.vllm_server import VLLMServer

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def one_run(videos: Path, out: Path, labels: str, strategy: str, model_args: list[str]) -> dict:
    t0 = time.perf_counter()
    code = vara_main(
        [
            "run",
            str(videos),
            "--labels",
            labels,
            "--strategy",
            strategy,
            "--out",
            str(out),
            "--no-progress",
            *model_args,
        ]
    )
    names = set(load_labelset(labels).names)
    preds = read_jsonl(out / "predictions.jsonl")
    run = json.loads((out / "run.json").read_text())["run_info"]
    return {
        "exit_code": code,
        "windows": run["n_windows"],
        "predictions": len(preds),
        "failures": run["n_failures"],
        "reasked": sum(p["attempts"] > 1 for p in preds),
        "in_label_set_pct": 100.0 * sum(set(p["labels"]) <= names for p in preds) / len(preds)
        if preds
        else None,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=Path, default=SHARED, help="folder of clips")
    ap.add_argument("--out", type=Path, help="write the results JSON here")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vara-validity-"))
    model = build_tiny_vlm(work / "tiny-vlm")
    opts = ServerOptions.cpu_test_defaults(model, max_images=16)
    results = []
    with VLLMServer(opts, log_path=work / "server.log") as server:
        paths = {"served": ["--vlm-url", server.url], "in-process": ["--vlm-model", str(model)]}
        for path, model_args in paths.items():
            for strategy in ("caption-reason", "direct"):
                for labels in ("kinetics-sample", "newborn-resuscitation"):
                    out = work / f"{path}-{strategy}-{labels}"
                    row = {"path": path, "strategy": strategy, "labels": labels}
                    row |= one_run(args.videos, out, labels, strategy, model_args)
                    print(json.dumps(row), flush=True)
                    results.append(row)
    total = sum(r["predictions"] for r in results)
    inside = sum(r["predictions"] * (r["in_label_set_pct"] or 0) / 100 for r in results)
    print(f"{int(inside)}/{total} predictions have only labels from their set")
    if args.out:
        args.out.write_text(json.dumps({"runs": results, "work_dir": str(work)}, indent=2))


if __name__ == "__main__":
    main()
