"""The report's view model and its renderings: ONE self-contained HTML page, and Markdown.

``vara.eval.report`` turns run directories into a ``Report`` (tables of strings, PNG plots,
window cards); ``render_html`` writes it with inline CSS and images as base64 data URIs, so
the page is a single file that opens anywhere, offline, and needs no JavaScript.
``eval/report_md.py`` writes the same view model as Markdown.
Every string that reaches either goes through ``html.escape``: captions, explanations and raw
answers are model output and may contain markup (Markdown also gets ``|`` and newlines
escaped so a cell stays a cell).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vara.types import Caption, Clip, Failure, Prediction

__all__ = [
    "Card",
    "CardEntry",
    "Example",
    "Examples",
    "Plot",
    "Report",
    "Table",
    "Thumbs",
    "EXAMPLES_HEADING",
    "escape",
    "jpeg_bytes",
    "label_diff",
    "one_plot",
    "render_html",
]


@dataclass(frozen=True)
class Table:
    """Cells as display strings; ``best`` holds (row, col) of cells with a column's best value."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    best: frozenset[tuple[int, int]] = frozenset()
    numeric: frozenset[int] = frozenset()  # column indices shown right-aligned


@dataclass(frozen=True)
class Plot:
    title: str
    file_name: str  # the PNG's name beside report.md
    png: bytes


@dataclass(frozen=True)
class Thumbs:
    """JPEG thumbnails of a window with their times, or ``note`` saying why there are none."""

    images: tuple[bytes, ...] = ()
    times_s: tuple[float, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Example:
    """One perturbation level's example frame as the model got it (PNG), or why there is none."""

    level: str
    file_name: str = ""  # the PNG's name beside report.md
    png: bytes = b""
    caption: str = ""  # which run, frame and size
    note: str = ""


@dataclass(frozen=True)
class Examples:
    """A sweep's row of example frames (one per level, in level order) and the window they
    come from; with no frames, ``note`` says why (shown as the thumbnails' placeholder)."""

    window: str = ""
    frames: tuple[Example, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class CardEntry:
    """What one run did with a window: a prediction, a failure, or neither (not finished)."""

    run: str
    prediction: Prediction | None = None
    failure: Failure | None = None


@dataclass(frozen=True)
class Card:
    clip: Clip
    entries: tuple[CardEntry, ...]
    thumbs: Thumbs = field(default_factory=Thumbs)


@dataclass(frozen=True)
class Report:
    title: str
    tables: tuple[tuple[str, Table], ...]  # (heading, table)
    notes: tuple[str, ...]
    f1_plot: Plot | None  # per-class F1 of every run
    confusion_plots: tuple[Plot, ...]  # one per run that has a confusion in its metrics
    cards: tuple[Card, ...]
    n_windows: int  # windows the cards were chosen from
    robustness_plot: Plot | None = None  # macro-F1 per perturbation level (a sweep's runs)
    examples: Examples | None = None  # one frame per perturbation level (a sweep's runs)


def label_diff(truth: tuple[str, ...] | None, predicted: tuple[str, ...]) -> list[tuple[str, str]]:
    """(label, kind): kind is "hit", "false-alarm", "miss", or "predicted" (truth unknown)."""
    if truth is None:
        return [(lab, "predicted") for lab in predicted]
    out = [(lab, "hit" if lab in truth else "false-alarm") for lab in predicted]
    return out + [(lab, "miss") for lab in truth if lab not in predicted]


def escape(text: object) -> str:
    """``text`` safe inside HTML text and quoted attributes (model output may hold markup)."""
    return html.escape(str(text), quote=True)


_e = escape


def jpeg_bytes(frame: np.ndarray, quality: int = 85) -> bytes:
    """One RGB uint8 frame (H, W, 3) as JPEG: the thumbnails of the report and review page."""
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


EXAMPLES_HEADING = "Example frames per perturbation"
_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--bg:#f6f8fa;--hit:#1a7f37;--miss:#cf222e;
--fa:#bc4c00;--best:#dafbe1}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;padding:24px 32px;max-width:1400px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px;padding-bottom:4px;
border-bottom:1px solid var(--line)}h3{font-size:15px;margin:0}h4{font-size:14px;margin:0 0 6px}
.muted,.note{color:var(--muted)}.note{margin:4px 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid var(--line);padding:5px 9px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{background:var(--best);font-weight:700}
img.plot{max-width:100%;border:1px solid var(--line);border-radius:6px;background:#fff}
.plots{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:16px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:#fff;
min-width:0;overflow-wrap:anywhere}
.card>header{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;margin-bottom:8px}
.thumbs{display:flex;gap:6px;margin-bottom:8px}
.thumbs figure{margin:0;flex:0 1 160px;min-width:0;text-align:center;font-size:11px;
color:var(--muted)}
.thumbs img{display:block;width:100%;height:auto;border-radius:4px}
.examples{display:flex;flex-wrap:wrap;gap:12px}
.examples figure{margin:0;flex:0 1 240px;min-width:0;font-size:12px;color:var(--muted)}
.examples figcaption strong{color:var(--fg)}
.examples img{display:block;width:100%;height:auto;border:1px solid var(--line);border-radius:4px}
.placeholder{background:var(--bg);border:1px dashed var(--line);border-radius:4px;
padding:18px;color:var(--muted);margin:0 0 8px;font-size:12px;overflow-wrap:anywhere}
.entry{border-top:1px solid var(--line);padding:8px 0 4px}
.lab{display:inline-block;border-radius:10px;padding:0 8px;margin:1px 2px;font-size:12px;
border:1px solid currentColor}
.lab.hit{color:var(--hit)}.lab.miss{color:var(--miss);text-decoration:line-through}
.lab.false-alarm{color:var(--fa);font-weight:700}.lab.predicted,.lab.truth{color:var(--fg)}
.badge{font-size:11px;border-radius:4px;padding:1px 6px;margin-left:6px;color:#fff}
.badge.ok{background:var(--hit)}.badge.wrong{background:var(--fa)}.badge.failed{background:var(--miss)}
.badge.none{background:var(--muted)}
.expl{margin:6px 0}ul.ev,ol.caps{margin:4px 0 4px 20px;padding:0}
.unverified{background:#fde2e1;color:#8a1c1c;border-radius:3px;padding:0 4px;font-size:.85em}
.quoted{background:#e3f4e3;color:#1d5e1d;border-radius:3px;padding:0 4px;font-size:.85em}
code{font-size:12px;background:var(--bg);padding:0 4px;border-radius:3px}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--bg);padding:8px;
border-radius:4px;font-size:12px;max-height:240px;overflow:auto}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
.failure{color:var(--miss)}
"""


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = []
    for i, row in enumerate(table.rows):
        cells = []
        for j, text in enumerate(row):
            cls = " ".join(
                name
                for name, on in (("num", j in table.numeric), ("best", (i, j) in table.best))
                if on
            )
            mark = ' title="best"' if (i, j) in table.best else ""
            cells.append(
                f'<td class="{cls}"{mark}>{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>"
            )
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _labels_html(pairs: list[tuple[str, str]]) -> str:
    if not pairs:
        return '<span class="muted">(none)</span>'
    return " ".join(f'<span class="lab {kind}">{_e(lab)}</span>' for lab, kind in pairs)


def _thumbs_html(thumbs: Thumbs) -> str:
    if not thumbs.images:
        return f'<p class="placeholder">{_e(thumbs.note)}</p>' if thumbs.note else ""
    figs = "".join(
        f'<figure><img alt="frame at {t:.2f} s" src="{_data_uri(img, "image/jpeg")}">'
        f"<figcaption>t={t:.2f} s</figcaption></figure>"
        for img, t in zip(thumbs.images, thumbs.times_s, strict=True)
    )
    return f'<div class="thumbs">{figs}</div>'


def _example_html(x: Example) -> str:
    if x.png:
        pic = f'<img class="example" alt="{_e(x.level)}" src="{_data_uri(x.png, "image/png")}">'
    else:
        pic = f'<p class="placeholder">{_e(x.note)}</p>'
    caption = f"<strong>{_e(x.level)}</strong><br>{_e(x.caption)}" if x.caption else _e(x.level)
    return f"<figure>{pic}<figcaption>{caption}</figcaption></figure>"


def _examples_html(examples: Examples | None) -> str:
    """The sweep's example frames in level order, or the placeholder saying why none."""
    if examples is None:
        return ""
    if examples.frames:
        figs = "".join(_example_html(x) for x in examples.frames)
        body = f'<p class="note">{_e(examples.window)}</p><div class="examples">{figs}</div>'
    else:
        body = f'<p class="placeholder">{_e(examples.note)}</p>'
    return f"<section><h2>{EXAMPLES_HEADING}</h2>{body}</section>"


def _caption_html(c: Caption) -> str:
    times = ", ".join(f"{t:.2f}" for t in c.timestamps_s)
    return f'<li>{_e(c.text)} <span class="muted">({_e(c.model)}; t={_e(times)} s)</span></li>'


def _raw_html(pred: Prediction) -> str:
    """Collapsed: the accepted raw answer, re-ask messages, models and prompt versions."""
    models = ", ".join(f"{k}: {v}" for k, v in pred.models.items())
    prompts = ", ".join(f"{p.id} v{p.version}" for p in pred.prompts)
    reasks = "".join(f"<li>{_e(r)}</li>" for r in pred.reask_errors)
    return (
        f"<details><summary>raw answer ({pred.attempts} attempt(s)), models, prompts</summary>"
        f"<pre>{_e(pred.raw)}</pre>"
        + (
            f'<div class="muted">re-asked because</div><ul class="ev">{reasks}</ul>'
            if reasks
            else ""
        )
        + f'<p class="muted">{_e(models)}; {_e(prompts)}</p></details>'
    )


# How an evidence quote checked against what it cites is shown (tools/evidence.py).
_VERIFIED = {
    True: '<span class="quoted" title="found in what it cites">quoted</span> ',
    False: '<span class="unverified" title="not found in what it cites">unverified quote</span> ',
    None: "",
}


def _prediction_html(pred: Prediction, truth: tuple[str, ...] | None) -> str:
    parts = [f"<div>{_labels_html(label_diff(truth, pred.labels))}</div>"]
    if pred.explanation:
        parts.append(f'<p class="expl">{_e(pred.explanation)}</p>')
    if pred.evidence:
        items = "".join(
            f'<li><code>{_e(ev.ref)}</code> <span class="muted">{_e(ev.source)}</span> '
            f"{_VERIFIED[ev.verified]}{_e(ev.text)}</li>"
            for ev in pred.evidence
        )
        parts.append(f'<ul class="ev">{items}</ul>')
    if pred.captions:
        caps = "".join(_caption_html(c) for c in pred.captions)
        parts.append(f'<div class="muted">captions</div><ol class="caps">{caps}</ol>')
    parts.append(_raw_html(pred))
    return "".join(parts)


def _entry_html(entry: CardEntry, truth: tuple[str, ...] | None) -> str:
    if entry.prediction is not None:
        pred = entry.prediction
        if truth is None:
            badge = ("none", "no ground truth")
        else:
            ok = set(pred.labels) == set(truth)
            badge = ("ok", "correct") if ok else ("wrong", "differs from truth")
        body = _prediction_html(pred, truth)
    elif entry.failure is not None:
        f = entry.failure
        badge = ("failed", "failed")
        body = f'<p class="failure">{_e(f.stage)}: {_e(f.error)}</p>'
        body += f"<details><summary>raw</summary><pre>{_e(f.raw)}</pre></details>" if f.raw else ""
    else:
        badge = ("none", "no prediction")
        body = '<p class="muted">no prediction and no failure recorded (run not finished?)</p>'
    title = f'<h4>{_e(entry.run)}<span class="badge {badge[0]}">{badge[1]}</span></h4>'
    return f'<section class="entry">{title}{body}</section>'


def _card_html(card: Card) -> str:
    clip = card.clip
    truth = clip.labels
    truth_html = _labels_html([(lab, "truth") for lab in truth]) if truth is not None else "unknown"
    head = (
        f"<header><h3>{_e(clip.clip_id)}</h3>"
        f'<span class="muted" title="{_e(clip.video)}">{_e(Path(clip.video).name)} · '
        f"{clip.start_s:.2f}–{clip.end_s:.2f} s</span>"
        f"<span>truth: {truth_html}</span></header>"
    )
    entries = "".join(_entry_html(e, truth) for e in card.entries)
    return f'<article class="card">{head}{_thumbs_html(card.thumbs)}{entries}</article>'


def _plots_html(heading: str, plots: tuple[Plot, ...]) -> str:
    if not plots:
        return ""
    imgs = "".join(
        f'<img class="plot" alt="{_e(p.title)}" src="{_data_uri(p.png, "image/png")}">'
        for p in plots
    )
    return f'<section><h2>{_e(heading)}</h2><div class="plots">{imgs}</div></section>'


def _cards_html(report: Report) -> str:
    legend = (
        'Predicted labels: <span class="lab hit">hit</span> <span class="lab false-alarm">'
        'false alarm</span>; <span class="lab miss">miss</span> = true label not predicted.'
    )
    shown = f"{len(report.cards)} of {report.n_windows} windows, failures and disagreements first."
    cards = "".join(_card_html(c) for c in report.cards)
    return (
        f'<section><h2>Windows</h2><p class="note">{_e(shown)} {legend}</p>'
        f'<div class="cards">{cards}</div></section>'
    )


def one_plot(plot: Plot | None) -> tuple[Plot, ...]:
    return (plot,) if plot else ()


def render_html(report: Report) -> str:
    """The whole page: tables, notes, plots and window cards; no scripts, no external files."""
    tables = "".join(
        f"<section><h2>{_e(h)}</h2>{_table_html(t)}</section>" for h, t in report.tables
    )
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in report.notes)
    f1 = (report.f1_plot,) if report.f1_plot else ()
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(report.title)}</h1>{notes}</header>"
        f"{tables}{_plots_html('Per-class F1', f1)}"
        f"{_plots_html('Robustness', one_plot(report.robustness_plot))}"
        f"{_examples_html(report.examples)}"
        f"{_plots_html('Confusion', report.confusion_plots)}{_cards_html(report)}</body></html>\n"
    )
