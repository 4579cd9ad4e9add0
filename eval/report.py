"""Reports over ``vara eval`` run directories: one self-contained HTML page plus Markdown.

    runs = find_runs(["runs/exp1"])          # a parent of strategy dirs, or strategy dirs
    md_path, html_path = write_report(runs, "runs/exp1/report")

A run directory is what ``vara eval`` writes per strategy (docs/results-format.md):
``results.json``, ``clips.jsonl``, ``predictions.jsonl``, ``failures.jsonl``. The report
holds a strategies x metrics table (best value per column marked, direction from the
metrics' ``higher_is_better``), a per-class F1 chart, a confusion plot per run, and cards for
the windows worth looking at (failures and wrong or disagreeing predictions first) with
thumbnails read from the clip's video; for a sweep, robustness curves and one example frame
per perturbation level (``vara.eval.examples``). The view model and its HTML/Markdown rendering live
in ``vara.eval.report_html``, plots in ``vara.eval.plots``, the window cards (which windows,
their thumbnails) in ``vara.eval.report_cards``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError
from vara.eval.events_table import events_table
from vara.eval.examples import example_frames
from vara.eval.plots import confusion_png, per_class_f1_png
from vara.eval.report_cards import add_thumbnails, select_cards
from vara.eval.report_html import Plot, Report, Table, render_html
from vara.eval.report_md import render_markdown
from vara.eval.robustness import robustness_png, robustness_table
from vara.eval.run_dirs import run_dirs
from vara.records import read_records
from vara.types import Clip, Failure, Prediction

__all__ = ["RunResult", "build_report", "find_runs", "load_run", "metrics_table", "write_report"]

_FIX = "pass a directory written by vara eval (a strategy directory or its parent)"
# (header, metrics key, higher is better when the metrics do not say)
_METRICS = (
    ("coverage", "coverage", True),
    ("macro-F1 [95% CI]", "macro_f1", True),
    ("micro-F1", "micro_f1", True),
    ("exact match", "exact_match", True),
    ("hallucination rate", "hallucination_rate", False),
    ("evidence verified", "evidence_verified_share", True),
)
_COLUMNS = (
    "strategy",
    "dataset",
    "n",
    *(h for h, _, _ in _METRICS),
    "clips/s",
    "models",
    "prompts",
)


@dataclass(frozen=True)
class RunResult:
    """One strategy directory: ``results.json`` as written, the clips, and what became of them."""

    path: Path
    results: dict[str, Any]
    clips: tuple[Clip, ...]
    predictions: dict[str, Prediction]  # by clip_id
    failures: tuple[Failure, ...]

    @property
    def run_info(self) -> dict[str, Any]:
        return self.results.get("run_info") or {}

    @property
    def metrics(self) -> dict[str, Any]:
        return self.results.get("metrics") or {}

    @property
    def strategy(self) -> str:
        return str(self.run_info.get("strategy") or self.path.name)


def _read_results(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    if not path.is_file():
        raise InputError(f"{run_dir} has no results.json: {_FIX}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON ({exc}); {_FIX}") from None
    missing = [
        k for k in ("run_info", "metrics") if not isinstance(results, dict) or k not in results
    ]
    if missing:
        raise InputError(f"{path} has no {' or '.join(missing)}: {_FIX}")
    return results


def load_run(run_dir: str | Path) -> RunResult:
    """Load one strategy directory; InputError naming the directory when it is not one."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"{run_dir} is not a directory: {_FIX}")
    results = _read_results(run_dir)
    if not (run_dir / "clips.jsonl").is_file():
        raise InputError(f"{run_dir} has no clips.jsonl: {_FIX}")
    clips = read_records(run_dir / "clips.jsonl", Clip, _FIX)
    preds = read_records(run_dir / "predictions.jsonl", Prediction, _FIX)
    failures = read_records(run_dir / "failures.jsonl", Failure, _FIX)
    if not (run_dir / "failures.jsonl").exists():  # older runs: only results.json lists them
        failures = [Failure.from_dict(f) for f in (results["run_info"] or {}).get("failures", [])]
    return RunResult(
        path=run_dir,
        results=results,
        clips=tuple(clips),
        predictions={p.clip_id: p for p in preds},
        failures=tuple(failures),
    )


def find_runs(paths: Iterable[str | Path]) -> list[RunResult]:
    """Runs under ``paths``: each a strategy dir (has results.json) or a parent of several."""
    none_found = "has no results.json and no subdirectory with one"
    runs = [load_run(d) for d in run_dirs(paths, _has_results, none_found, _FIX)]
    if not runs:
        raise InputError(f"no run directories given: {_FIX}")
    return runs


def _has_results(path: Path) -> bool:
    return (path / "results.json").is_file()


def _run_names(runs: Sequence[RunResult]) -> list[str]:
    """Strategy names, with the parent directory added where two runs share one."""
    names = [r.strategy for r in runs]
    return [
        f"{n} ({r.path.resolve().parent.name})" if names.count(n) > 1 else n
        for n, r in zip(names, runs, strict=True)
    ]


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _fmt(value: Any, digits: int = 3) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.{digits}f}"


def _metric_cells(m: dict[str, Any], key: str) -> str:
    text = _fmt(m.get(key))
    ci = m.get("macro_f1_ci95") if key == "macro_f1" else None
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        text += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return text


def _best_cells(columns: list[tuple[int, list[float | None], bool]], digits: int = 3) -> set:
    """(row, col) of each column's best value (ties included), marked only across >= 2 runs."""
    best = set()
    for col, values, higher in columns:
        present = [round(v, digits) for v in values if v is not None]
        if len(values) < 2 or not present:
            continue
        top = max(present) if higher else min(present)
        best |= {
            (i, col) for i, v in enumerate(values) if v is not None and round(v, digits) == top
        }
    return best


def metrics_table(runs: Sequence[RunResult], names: Sequence[str]) -> Table:
    """Strategies x metrics; clips/s counts as higher-is-better."""
    rows, scored = [], []
    for run, name in zip(runs, names, strict=True):
        m, info = run.metrics, run.run_info
        models = "; ".join(f"{k}: {v}" for k, v in (info.get("models") or {}).items())
        prompts = ", ".join(f"{p.get('id')} v{p.get('version')}" for p in info.get("prompts") or [])
        rows.append(
            (name, str((info.get("dataset") or {}).get("name", "–")), str(m.get("n", "–")))
            + tuple(_metric_cells(m, key) for _, key, _ in _METRICS)
            + (
                _fmt((info.get("timings") or {}).get("clips_per_s"), 2),
                models or "–",
                prompts or "–",
            )
        )
    hib = {**{k: d for _, k, d in _METRICS}, **(runs[0].metrics.get("higher_is_better") or {})}
    # A run that predicted nothing (coverage 0) is never marked best, e.g. on tied zeros.
    live = [(_num(r.metrics.get("coverage")) or 0.0) > 0 for r in runs]

    def values(get) -> list[float | None]:
        return [_num(get(r)) if ok else None for r, ok in zip(runs, live, strict=True)]

    for j, (_, key, _) in enumerate(_METRICS):
        scored.append((3 + j, values(lambda r, k=key: r.metrics.get(k)), bool(hib.get(key, True))))
    speeds = values(lambda r: (r.run_info.get("timings") or {}).get("clips_per_s"))
    scored.append((3 + len(_METRICS), speeds, True))
    numeric = frozenset(range(2, 4 + len(_METRICS)))
    return Table(_COLUMNS, tuple(rows), frozenset(_best_cells(scored)), numeric)


def runs_table(runs: Sequence[RunResult], names: Sequence[str]) -> Table:
    """Where each run lives and how it went: counts, wall time, start."""
    rows = []
    for run, name in zip(runs, names, strict=True):
        info = run.run_info
        counts, timings = info.get("counts") or {}, info.get("timings") or {}
        rows.append(
            (
                name,
                str(run.path),
                str(counts.get("n_predictions", len(run.predictions))),
                str(counts.get("n_failures", len(run.failures))),
                str(counts.get("n_reasked", "–")),
                _fmt(timings.get("wall_s"), 1),
                str(info.get("started", "–")),
            )
        )
    columns = ("strategy", "directory", "predictions", "failures", "re-asked", "wall s", "started")
    return Table(columns, tuple(rows), numeric=frozenset({2, 3, 4, 5}))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


def build_report(runs: Sequence[RunResult], *, max_cards: int = 24, thumbs: int = 4) -> Report:
    """Everything the report shows, as a ``Report`` view model (see vara.eval.report_html)."""
    if not runs:
        raise InputError(f"no runs to report on: {_FIX}")
    names = _run_names(runs)
    f1 = per_class_f1_png(names, [r.metrics for r in runs])
    confusion = []
    for k, (run, name) in enumerate(zip(runs, names, strict=True), start=1):
        png = confusion_png(name, run.metrics.get("confusion"))
        if png is not None:
            confusion.append(Plot(f"confusion: {name}", f"confusion-{k}-{_slug(name)}.png", png))
    cards, n_windows = select_cards(runs, names, max_cards)
    tables = [("Strategies", metrics_table(runs, names)), ("Runs", runs_table(runs, names))]
    events = events_table(names, [r.metrics for r in runs])
    if events is not None:
        tables.insert(1, ("Events: F1 at tIoU, mAP over tIoU 0.5:0.95 (macro)", events))
    robust = robustness_table(runs)
    if robust is not None:
        tables.insert(1, ("Robustness: macro-F1 per perturbation (change from none)", robust))
    curves = robustness_png(runs)
    return Report(
        title="vara report: " + ", ".join(names),
        tables=tuple(tables),
        notes=_notes(runs),
        f1_plot=Plot("per-class F1", "per_class_f1.png", f1) if f1 else None,
        confusion_plots=tuple(confusion),
        robustness_plot=Plot("robustness", "robustness.png", curves) if curves else None,
        examples=example_frames(runs),
        cards=tuple(add_thumbnails(cards, runs, thumbs)),
        n_windows=n_windows,
    )


def _notes(runs: Sequence[RunResult]) -> tuple[str, ...]:
    datasets = {(r.run_info.get("dataset") or {}).get("sha256") for r in runs}
    notes = (f"{len(runs)} run(s). Bold green: the best value of a metric across runs.",)
    if len(datasets) > 1:
        notes += ("Warning: the runs were evaluated on different datasets (sha256 differ).",)
    return notes


def write_report(
    runs: Sequence[RunResult], out_dir: str | Path, *, max_cards: int = 24, thumbs: int = 4
) -> tuple[Path, Path]:
    """Write ``report.md`` (+ its PNGs) and a self-contained ``report.html`` into ``out_dir``."""
    if max_cards < 0 or thumbs < 0:
        raise InputError(f"max_cards and thumbs must be >= 0, got {max_cards} and {thumbs}")
    report = build_report(runs, max_cards=max_cards, thumbs=thumbs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    extra = tuple(p for p in (report.f1_plot, report.robustness_plot) if p)
    examples = tuple(x for x in (report.examples.frames if report.examples else ()) if x.png)
    for plot in extra + report.confusion_plots + examples:
        (out / plot.file_name).write_bytes(plot.png)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return md_path, html_path
