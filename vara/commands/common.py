"""What the commands share: exit codes, the model/sampling/cache flags of run and eval, and
how those flags become strategy overrides."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

__all__ = [
    "EXIT_ABORTED",
    "EXIT_ERROR",
    "EXIT_FAILURES",
    "EXIT_OK",
    "MAX_FAILURES_SHOWN",
    "add_model_flags",
    "add_smoothing_flags",
    "endpoints_file",
    "folder",
    "log_to",
    "open_cache",
    "run_overrides",
]

# 0 complete, 1 finished with failures (listed), 2 usage error (fix the command), 3 aborted:
# a model server became unreachable (restart it, re-run the same command: it resumes).
EXIT_OK, EXIT_FAILURES, EXIT_ERROR, EXIT_ABORTED = 0, 1, 2, 3
MAX_FAILURES_SHOWN = 20  # the rest are in failures.jsonl


def folder(value: str) -> str:
    """An ``--out`` folder (argparse ``type``): made later if missing; a file there is a usage
    error naming it, before any work."""
    if Path(value).exists() and not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"{value!r} is a file, not a folder: give a folder path")
    return value


def endpoints_file(path: str) -> list[str]:
    """An endpoints file as strategy overrides: YAML or JSON giving per role (``vlm``,
    ``llm``) a URL, a list of replica URLs, or ``{url: URL|[URL, ...], model: NAME}``; or a
    plain list of URLs, one a line (what ``vara serve --url-file`` writes), for the VLM."""
    import yaml

    from vara.errors import ConfigError

    role_shape = "a URL, a list of URLs, or {url: URL|[URL, ...], model: NAME}"
    try:
        text = Path(path).read_text()
        lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
        if lines and all(x.startswith(("http://", "https://")) for x in lines):
            data = {"vlm": lines}  # a --url-file
        else:
            data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--endpoints {path}: cannot be read ({exc})") from None
    if not isinstance(data, dict) or not data or set(data) - {"vlm", "llm"}:
        other = sorted(set(data) - {"vlm", "llm"}) if isinstance(data, dict) else []
        unknown = f" (unknown: {', '.join(map(str, other))})" if other else ""
        raise ConfigError(
            f"--endpoints {path}: expected `vlm:` and/or `llm:`{unknown}, each {role_shape}; "
            "or one URL a line"
        )
    o: list[str] = []
    for role, value in data.items():
        entry = value if isinstance(value, dict) else {"url": value}
        urls = entry.get("url")
        urls = [urls] if isinstance(urls, str) else urls
        valid = isinstance(urls, list) and urls and all(isinstance(u, str) and u for u in urls)
        if not valid or set(entry) - {"url", "model"}:
            extra = sorted(set(entry) - {"url", "model"})
            unknown = f" (unknown: {', '.join(map(str, extra))})" if extra else ""
            raise ConfigError(f"--endpoints {path}: `{role}` must be {role_shape}{unknown}")
        o.append(f"{role}.url={urls[0] if len(urls) == 1 else json.dumps(urls)}")
        o.append(f"{role}.model={entry['model']}" if entry.get("model") else f"{role}.model=null")
    return o


def run_overrides(args: argparse.Namespace) -> list[str]:
    """CLI flags as strategy overrides: the endpoints file, then the flags, then ``--set``
    (the later wins)."""
    o: list[str] = endpoints_file(args.endpoints) if args.endpoints else []
    for role in ("vlm", "llm"):
        urls, model = getattr(args, f"{role}_url") or [], getattr(args, f"{role}_model")
        if urls:
            # One URL stays a string; replicas become a list (JSON is YAML).
            o.append(f"{role}.url={urls[0] if len(urls) == 1 else json.dumps(urls)}")
            # A server's model name is discovered unless given: the YAML's hub id would be wrong.
            o.append(f"{role}.model={model}" if model else f"{role}.model=null")
        elif model:
            o.append(f"{role}.model={model}")
    if args.adapter:
        o.append(f"vlm.adapter={args.adapter}")
    flags = {
        "windows.window_s": args.window_s,
        "windows.overlap": args.overlap,
        "sampler.n_frames": args.frames,
        "sampler.max_side": args.max_side,
        "concurrency": args.concurrency,
    }
    o += [f"{k}={v}" for k, v in flags.items() if v is not None]
    smoothing = {
        "timeline.min_event_s": args.min_event_s,
        "timeline.merge_gap_s": args.merge_gap_s,
        "timeline.hysteresis": None if args.hysteresis is None else list(args.hysteresis),
    }
    o += [f"{k}={v}" for k, v in smoothing.items() if v is not None]
    if args.perturb:  # JSON is YAML: the specs' ':' ',' '=' stay inside their strings
        o.append(f"pixels.perturb={json.dumps(args.perturb)}")
    return o + list(args.set)


def _hysteresis(text: str) -> tuple[float, float]:
    from vara.smoothing import parse_hysteresis

    try:
        return parse_hysteresis(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_smoothing_flags(s: argparse.ArgumentParser) -> None:
    """How timelines are smoothed (vara/smoothing.py; default: not at all)."""
    s.add_argument(
        "--min-event-s",
        type=float,
        metavar="S",
        help="timeline: drop events shorter than S seconds (default 0: keep all)",
    )
    s.add_argument(
        "--merge-gap-s",
        type=float,
        metavar="G",
        help="timeline: merge events of one label less than G seconds apart (default 0: none)",
    )
    s.add_argument(
        "--hysteresis",
        type=_hysteresis,
        metavar="ENTER,EXIT",
        help="timeline: a label turns on at a window scoring >= ENTER and stays on while >= "
        "EXIT, e.g. 0.6,0.4 (strategies with scores; windows without keep their labels)",
    )


def open_cache(args: argparse.Namespace):
    from vara.tools.cache import CaptionCache, default_cache_path

    return None if args.no_cache else CaptionCache(args.cache or default_cache_path())


class _FirstRecordFileHandler(logging.FileHandler):
    """A file handler that makes its folder and file at the first record, so a command
    refused before any work leaves no run.log (nor an out dir) behind."""

    def __init__(self, path: Path):
        super().__init__(path, delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def log_to(out: Path) -> None:
    """Append vara's log (warnings, tracebacks of unexpected errors) to ``out/run.log``."""
    handler = _FirstRecordFileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("vara").addHandler(handler)


def add_model_flags(s: argparse.ArgumentParser) -> None:
    """Flags shared by run and eval: models, sampling, overrides, cache, progress."""
    s.add_argument(
        "--vlm-url",
        action="append",
        metavar="URL",
        help="vLLM server base URL, e.g. http://127.0.0.1:8000/v1; repeat for replicas of the "
        "same model (balanced, with failover)",
    )
    s.add_argument("--vlm-model", help="served model name, or hub id / local path in-process")
    s.add_argument(
        "--adapter",
        metavar="DIR",
        help="in-process: a PEFT LoRA adapter applied to --vlm-model (vara finetune lvlm_sft)",
    )
    s.add_argument(
        "--llm-url",
        action="append",
        metavar="URL",
        help="server of a separate reasoning LLM (default: the VLM); repeat for replicas",
    )
    s.add_argument("--llm-model", help="model name of the reasoning LLM")
    s.add_argument(
        "--endpoints",
        metavar="FILE",
        help="YAML/JSON file of each role's replica URLs, e.g. `vlm: [http://a:8000/v1, "
        "http://b:8000/v1]` (docs/scale.md); --vlm-url/--llm-url and --set win over it",
    )
    # Defaults are the strategy's (its YAML), so none is restated here.
    s.add_argument("--window-s", type=float, help="window length in seconds")
    s.add_argument("--overlap", type=float, help="window overlap fraction 0..1 (0.5 = half)")
    s.add_argument("--frames", type=int, help="frames sampled per window")
    s.add_argument("--max-side", type=int, help="resize frames so the longer side is at most this")
    s.add_argument("--concurrency", type=int, help="windows in flight at once")
    s.add_argument(
        "--perturb",
        action="append",
        default=[],
        metavar="SPEC",
        help="a pixel step after the resize, for every frame any model sees (repeatable, in "
        "order): mask:frac=0.3,shape=rect|ellipse|patches,place=center|random, "
        "mask-regions:FILE, isolate:FILE, blur:SIGMA, noise:SIGMA, drop-frames:FRAC",
    )
    add_smoothing_flags(s)
    s.add_argument("--prompts-dir", help="directory of prompt files shadowing the packaged ones")
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any strategy field, e.g. --set generation.temperature=0.2",
    )
    s.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="spread videos over a Ray cluster: ADDRESS (auto, ray://HOST:10001), or alone "
        "$RAY_ADDRESS / a new local cluster; needs vara[ray] (docs/scale.md)",
    )
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument(
        "--cache",
        help="caption cache file (default: $VARA_CACHE_DIR or ~/.cache/vara/captions.sqlite)",
    )
    s.add_argument("--no-cache", action="store_true", help="always ask the VLM, store nothing")
