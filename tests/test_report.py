"""vara.eval.report: run dirs in, one self-contained report.html (+ report.md) out.

Two format-correct run dirs (docs/results-format.md) are built from the real dataclasses:
a multi-label ``caption-reason`` and a single-label ``direct`` run over the same windows of
a short synthetic H.264 video, plus one window whose video does not exist. A caption carries
``<script>alert(1)</script>`` to prove model text is escaped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vara.errors import InputError
from vara.eval.report import find_runs, load_run, metrics_table, write_report
from vara.testing.browser import CHROMIUM, dump_dom
from vara.testing.synth_video import write_test_video
from vara.types import Caption, Clip, Evidence, Failure, Prediction, PromptRef

LABELS = ("Ventilation", "Stimulation", "Suction")
XSS = "<script>alert(1)</script>"
IMG_XSS = "<img src=x onerror=alert(2)>"


def _clips(video: Path) -> list[Clip]:
    v, missing = str(video), str(video.parent / "missing.mp4")
    return [
        Clip("clip.mp4:0.00-1.00", v, 0.0, 1.0, ("Ventilation",)),
        Clip("clip.mp4:1.00-2.00", v, 1.0, 2.0, ("Stimulation",)),
        Clip("clip.mp4:0.50-1.50", v, 0.5, 1.5, ("Suction",)),
        Clip("missing.mp4:0.00-1.00", missing, 0.0, 1.0, ("Suction",)),
    ]


def _pred(clip: Clip, strategy: str, labels: tuple[str, ...], caption: str = "") -> Prediction:
    caps = ()
    if caption:
        caps = (
            Caption(clip.clip_id, caption, (3, 12), (0.12, 0.48), "tiny-vlm", "cap", "ab", 0.1),
        )
    return Prediction(
        clip_id=clip.clip_id,
        video=clip.video,
        start_s=clip.start_s,
        end_s=clip.end_s,
        labels=labels,
        evidence=(Evidence("caption", "caption:1", f"bag visible {IMG_XSS}"),),
        explanation=f"{strategy} sees {', '.join(labels) or 'nothing'} | pipes | stay {IMG_XSS}",
        strategy=strategy,
        prompts=(PromptRef("reason", 1, "f00d"),),
        models={"vlm": "tiny-vlm", "llm": "tiny-llm"},
        raw=json.dumps({"labels": labels}),
        attempts=2 if caption else 1,
        reask_errors=("'Foo' is not one of [...]",) if caption else (),
        captions=caps,
    )


def _metrics(multi: bool, f1s: tuple[float, ...], halluc: float) -> dict:
    per_class = {
        lab: {"precision": f, "recall": f, "f1": f, "support": 1}
        for lab, f in zip(LABELS, f1s, strict=True)
    }
    if multi:
        confusion = {
            "type": "multilabel",
            "labels": list(LABELS),
            "per_class": {lab: [[2, 1], [0, 1]] for lab in LABELS},
        }
    else:
        cols = [*LABELS, "(failed)"]
        matrix = [[1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
        confusion = {"type": "matrix", "labels": cols, "matrix": matrix}
    macro = sum(f1s) / len(f1s)
    return {
        "labels": list(LABELS),
        "multi_label": multi,
        "n": 4,
        "coverage": 0.75 if multi else 1.0,
        "per_class": per_class,
        "macro_precision": macro,
        "macro_recall": macro,
        "macro_f1": macro,
        "micro_f1": macro,
        "weighted_f1": macro,
        "exact_match": macro,
        "macro_f1_ci95": [max(0.0, macro - 0.2), min(1.0, macro + 0.2)],
        "hallucination_rate": halluc,
        "confusion": confusion,
        "thresholds": None,
        "higher_is_better": {
            "macro_f1": True,
            "micro_f1": True,
            "exact_match": True,
            "coverage": True,
            "hallucination_rate": False,
        },
    }


def _write_run(d: Path, strategy: str, clips, preds, failures, metrics: dict, speed: float):
    d.mkdir(parents=True)
    for name, recs in (("clips", clips), ("predictions", preds), ("failures", failures)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r.to_dict()) + "\n" for r in recs))
    run_info = {
        "strategy": strategy,
        "dataset": {"name": "synthetic", "path": str(d / "m.csv"), "sha256": "x", "n_clips": 4},
        "prompts": [{"id": "reason", "version": 1, "sha256": "f00d"}],
        "models": {"vlm": "tiny-vlm", "llm": "tiny-llm"},
        "counts": {"n_clips": 4, "n_predictions": len(preds), "n_failures": len(failures)},
        "timings": {"wall_s": 4 / speed, "clips_per_s": speed},
        "failures": [f.to_dict() for f in failures],
        "started": "2026-11-22T15:00:00+00:00",
    }
    results = {"run_info": run_info, "metrics": metrics, "meta_info": {"python": "3.x"}}
    (d / "results.json").write_text(json.dumps(results))


@pytest.fixture(scope="module")
def parent(tmp_path_factory) -> Path:
    """runs/exp with caption-reason (multi-label) and direct (single-label) strategy dirs."""
    root = tmp_path_factory.mktemp("runs")
    video = write_test_video(root / "clip.mp4", n_frames=50, fps=25.0, codec="h264")
    a, b, c, m = _clips(video)
    preds = [
        _pred(a, "caption-reason", ("Ventilation", "Suction"), caption=XSS),
        _pred(b, "caption-reason", ("Stimulation",), caption="a hand rubs the back"),
        _pred(c, "caption-reason", ("Suction",)),
    ]
    fail = [Failure(m.clip_id, "caption", "vlm timed out after 30 s", raw=f"partial {XSS}")]
    exp = root / "exp"
    _write_run(
        exp / "caption-reason",
        "caption-reason",
        [a, b, c, m],
        preds,
        fail,
        _metrics(True, (0.8, 0.9, 0.5), 0.25),
        speed=0.5,
    )
    direct = {a: ("Stimulation",), b: ("Suction",), c: ("Suction",), m: ("Suction",)}
    preds = [_pred(x, "direct", labs) for x, labs in direct.items()]
    _write_run(
        exp / "direct",
        "direct",
        [a, b, c, m],
        preds,
        [],
        _metrics(False, (0.6, 0.0, 0.7), 0.0),
        speed=2.0,
    )
    return exp


@pytest.fixture(scope="module")
def report(parent, tmp_path_factory) -> tuple[Path, Path]:
    return write_report(find_runs([parent]), tmp_path_factory.mktemp("report"), thumbs=4)


class _Parsed(HTMLParser):
    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_html_is_one_file_with_table_plots_thumbnails_and_cards(report):
    md_path, html_path = report
    page = html_path.read_text()
    parsed = _Parsed(page)
    tags = [t for t, _ in parsed.tags]
    srcs = [a["src"] for t, a in parsed.tags if t == "img"]
    assert "link" not in tags and not any(t in tags for t in ("script", "iframe", "object"))
    assert srcs and all(s.startswith("data:image/") for s in srcs)  # nothing external
    assert sum(s.startswith("data:image/png;base64,") for s in srcs) == 3  # F1 + 2 confusions
    assert sum(s.startswith("data:image/jpeg;base64,") for s in srcs) == 3 * 4  # 3 windows x 4
    text = " ".join(parsed.text)
    for header in ("strategy", "coverage", "macro-F1 [95% CI]", "hallucination rate", "clips/s"):
        assert header in text
    assert "0.733 [0.533, 0.933]" in text  # macro-F1 with CI of caption-reason
    cards = [a for t, a in parsed.tags if t == "article" and a.get("class") == "card"]
    assert len(cards) == 4
    assert sum(1 for t, a in parsed.tags if a.get("class") == "lab false-alarm") >= 2


def test_model_text_is_escaped_and_no_script_element(report):
    page = report[1].read_text()
    parsed = _Parsed(page)
    assert all(t != "script" for t, _ in parsed.tags)
    assert not any(a.get("src") == "x" or "onerror" in a for _, a in parsed.tags)
    text = "".join(parsed.text)
    assert XSS in text and IMG_XSS in text  # shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_missing_video_gives_placeholder(report):
    parsed = _Parsed(report[1].read_text())
    placeholders = [a for t, a in parsed.tags if a.get("class") == "placeholder"]
    assert len(placeholders) == 1
    assert "missing.mp4" in "".join(parsed.text) and "not found" in "".join(parsed.text)


def test_markdown_has_tables_and_png_files_beside_it(report):
    md_path, _ = report
    md = md_path.read_text()
    assert "| strategy | dataset | n | coverage |" in md
    assert "**0.733 \\[0.533, 0.933\\]**" in md  # best macro-F1 in bold
    assert "<img" not in md and "&lt;img src=x onerror=alert(2)&gt;" in md  # explanation
    assert "\\| pipes \\| stay" in md  # a | in model text does not split a cell
    pngs = [line.split("](")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert len(pngs) == 3 and all((md_path.parent / p).is_file() for p in pngs)


def test_best_value_follows_higher_is_better(parent):
    runs = find_runs([parent])
    table = metrics_table(runs, [r.strategy for r in runs])
    col = table.columns.index
    assert (0, col("macro-F1 [95% CI]")) in table.best  # caption-reason 0.733 > direct 0.433
    assert (1, col("hallucination rate")) in table.best  # lower is better: direct 0.0
    assert (1, col("clips/s")) in table.best and (0, col("clips/s")) not in table.best


def test_a_run_that_predicted_nothing_is_never_best(parent):
    runs = find_runs([parent])
    metrics = {**runs[1].metrics, "coverage": 0.0, "macro_f1": 0.0, "exact_match": 1.0}
    dead = dataclasses.replace(runs[1], results={**runs[1].results, "metrics": metrics})
    table = metrics_table([runs[0], dead], ["alive", "dead"])
    assert table.best and all(row == 0 for row, _ in table.best)


def test_cards_put_failures_and_disagreements_first(parent, tmp_path):
    # Window 0: both wrong; 1: direct wrong; 2: both right; 3: caption-reason failed.
    _, html_path = write_report(find_runs([parent]), tmp_path, max_cards=2, thumbs=0)
    parsed = _Parsed(html_path.read_text())
    ids = [d for d in parsed.text if d.startswith(("clip.mp4:", "missing.mp4:"))]
    assert ids[:2] == ["clip.mp4:0.00-1.00", "clip.mp4:1.00-2.00"]
    assert "2 of 4 windows" in "".join(parsed.text)
    assert not any(t == "img" and a["src"].startswith("data:image/jpeg") for t, a in parsed.tags)


def test_find_runs_takes_parent_and_strategy_dirs(parent):
    assert [r.strategy for r in find_runs([parent])] == ["caption-reason", "direct"]
    one = find_runs([parent / "direct"])
    assert len(one) == 1 and one[0].metrics["multi_label"] is False
    both = find_runs([parent / "direct", parent])  # the same dir twice counts once
    assert sorted(r.strategy for r in both) == ["caption-reason", "direct"]
    run = load_run(parent / "caption-reason")
    assert len(run.clips) == 4 and len(run.predictions) == 3
    assert run.failures[0].stage == "caption"


def test_non_results_dir_is_an_input_error_naming_it(tmp_path, parent):
    empty = tmp_path / "x"
    empty.mkdir()
    with pytest.raises(InputError, match=r"x has no results\.json.*vara eval"):
        load_run(empty)
    with pytest.raises(InputError, match=f"{empty}.*vara eval"):
        find_runs([empty])
    with pytest.raises(InputError, match="is not a directory"):
        find_runs([tmp_path / "nope"])
    half = tmp_path / "half"
    shutil.copytree(parent / "direct", half)
    (half / "clips.jsonl").unlink()
    with pytest.raises(InputError, match=r"half has no clips\.jsonl"):
        load_run(half)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} not installed")
def test_chromium_renders_table_and_escaped_caption(report, tmp_path):
    dom = dump_dom(report[1], tmp_path / "profile")
    assert "<table>" in dom and "macro-F1 [95% CI]" in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script" not in dom.lower()


def test_sparse_results_still_give_a_report(tmp_path):
    """No metrics, no ground truth, a video-level failure: a report, not a KeyError."""
    video = write_test_video(tmp_path / "v.mp4", n_frames=50, fps=25.0, codec="h264")
    a = Clip("v:0-1", str(video), 0.0, 1.0)
    b = Clip("w:0-1", str(tmp_path / "w.mp4"), 0.0, 1.0)
    run = tmp_path / "runs" / "bare"
    run.mkdir(parents=True)
    (run / "clips.jsonl").write_text(
        json.dumps(a.to_dict()) + "\n" + json.dumps(b.to_dict()) + "\n"
    )
    (run / "predictions.jsonl").write_text(
        json.dumps(_pred(a, "bare", ("Suction",)).to_dict()) + "\n"
    )
    (run / "failures.jsonl").write_text(
        json.dumps(Failure(b.video, "probe", "not found").to_dict()) + "\n"
    )
    (run / "results.json").write_text(json.dumps({"run_info": {}, "metrics": {}}))
    md_path, html_path = write_report(find_runs([tmp_path / "runs"]), tmp_path / "out", thumbs=2)
    page = html_path.read_text()
    assert "no ground truth" in page and "probe: not found" in page
    assert "data:image/png" not in page and page.count("data:image/jpeg") == 2
    assert "| bare | – | – |" in md_path.read_text()
