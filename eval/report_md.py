"""The report's Markdown rendering: the tables, plots (PNG files beside it), example frames
and window cards of ``eval/report_html.py``'s view model. Model text is made inert: HTML
escaped, ``|`` and newlines escaped, so a cell stays a cell and nothing becomes a link."""

from __future__ import annotations

import html
import re

from vara.eval.report_html import (
    EXAMPLES_HEADING,
    Card,
    Examples,
    Plot,
    Report,
    Table,
    label_diff,
    one_plot,
)

__all__ = ["render_markdown"]

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|])")


def _md(text: object) -> str:
    """Model text made inert for Markdown: no raw HTML, no table breaks, no emphasis/links."""
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=False))


def _md_table(table: Table) -> list[str]:
    def cell(i: int, j: int, text: str) -> str:
        return f"**{_md(text)}**" if (i, j) in table.best else _md(text)

    lines = ["| " + " | ".join(_md(c) for c in table.columns) + " |"]
    lines.append(
        "|"
        + "|".join("---:" if j in table.numeric else "---" for j in range(len(table.columns)))
        + "|"
    )
    lines += [
        "| " + " | ".join(cell(i, j, t) for j, t in enumerate(row)) + " |"
        for i, row in enumerate(table.rows)
    ]
    return lines


def _md_card(card: Card) -> list[str]:
    clip = card.clip
    truth = ", ".join(clip.labels) if clip.labels is not None else "unknown"
    lines = [
        f"### {_md(clip.clip_id)}",
        "",
        f"{_md(clip.video)}, {clip.start_s:.2f}-{clip.end_s:.2f} s; truth: {_md(truth)}",
        "",
    ]
    lines += [
        "| strategy | predicted | missed | false alarms | explanation / failure |",
        "|---|---|---|---|---|",
    ]
    for e in card.entries:
        if e.prediction is None:
            why = (
                f"failed at {e.failure.stage}: {e.failure.error}" if e.failure else "no prediction"
            )
            lines.append(f"| {_md(e.run)} | – | – | – | {_md(why)} |")
            continue
        diff = label_diff(clip.labels, e.prediction.labels)
        pick = [
            ", ".join(lab for lab, k in diff if k in kinds)
            for kinds in (("hit", "false-alarm", "predicted"), ("miss",), ("false-alarm",))
        ]
        lines.append(
            f"| {_md(e.run)} | "
            + " | ".join(_md(p) for p in pick)
            + f" | {_md(e.prediction.explanation)} |"
        )
    return lines + [""]


def _md_plots(heading: str, plots: tuple[Plot, ...]) -> list[str]:
    if not plots:
        return []
    return [f"## {heading}", ""] + [f"![{_md(p.title)}]({p.file_name})\n" for p in plots]


def _md_examples(examples: Examples | None) -> list[str]:
    """A one-row table: the levels as headers, their frames (PNG files beside) below."""
    if examples is None:
        return []
    if not examples.frames:
        return [f"## {EXAMPLES_HEADING}", "", _md(examples.note), ""]
    frames = examples.frames
    images = [f"![{_md(x.level)}]({x.file_name})" if x.png else _md(x.note) for x in frames]
    return [
        f"## {EXAMPLES_HEADING}",
        "",
        _md(examples.window),
        "",
        "| " + " | ".join(_md(x.level) for x in frames) + " |",
        "|" + "---|" * len(frames),
        "| " + " | ".join(images) + " |",
        "| " + " | ".join(_md(x.caption) for x in frames) + " |",
        "",
    ]


def render_markdown(report: Report) -> str:
    """The report as Markdown; plots are referenced as PNG files beside it."""
    lines = [f"# {_md(report.title)}", ""] + [f"{_md(n)}  " for n in report.notes] + [""]
    for heading, table in report.tables:
        lines += [f"## {_md(heading)}", "", *_md_table(table), ""]
    lines += _md_plots("Per-class F1", one_plot(report.f1_plot))
    lines += _md_plots("Robustness", one_plot(report.robustness_plot))
    lines += _md_examples(report.examples)
    lines += _md_plots("Confusion", report.confusion_plots)
    lines += [
        "## Windows",
        "",
        f"{len(report.cards)} of {report.n_windows} windows, failures and disagreements "
        "first; thumbnails are in report.html.",
        "",
    ]
    for card in report.cards:
        lines += _md_card(card)
    return "\n".join(lines)
