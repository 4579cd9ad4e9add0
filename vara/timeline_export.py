"""A run's timelines in the formats people open: ELAN (.eaf), WebVTT (.vtt), interval CSV.

- **ELAN** (EAF 3.0, the annotation tool of clinical and behavioural researchers): one tier
  per label, one time-aligned annotation per event; times in integer milliseconds, two time
  slots per annotation (ELAN links annotations that share a slot, so events never do).
- **WebVTT** (subtitles any player shows): one cue per event, the label as its text; events
  of different labels that overlap are overlapping cues, which players stack.
- **CSV** ``video,label,start_s,end_s``: the interval manifest ``vara eval`` reads
  (``vara.tools.datasets``), so a corrected or accepted timeline becomes ground truth. A
  video without events is one row with empty label and times, so it keeps its windows.

The writers are pure: they return text, the caller names the files (``vara timeline``).
What made the events (the smoothing, vara/smoothing.py) goes into each file that can hold
it: an EAF header ``PROPERTY``, a WebVTT ``NOTE``. ``read_intervals`` reads such a CSV (or
any interval manifest) back as events per video, e.g. for the truth lane of a Gantt chart.
"""

from __future__ import annotations

import csv
import mimetypes
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from vara.errors import InputError
from vara.types import Timeline, TimelineEvent

__all__ = ["eaf_text", "interval_rows", "read_intervals", "vtt_text", "vtt_time"]

INTERVAL_HEADER = ["video", "label", "start_s", "end_s"]
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


def _tier_labels(timeline: Timeline, labels: Sequence[str]) -> list[str]:
    """``labels`` in order (a tier each, empty ones too), then any other label that occurs."""
    extra = sorted({e.label for e in timeline.events} - set(labels))
    return [*labels, *extra]


def eaf_text(
    timeline: Timeline,
    *,
    date: str,
    labels: Sequence[str] = (),
    properties: Mapping[str, str] | None = None,
) -> str:
    """The EAF 3.0 XML of one video's timeline; ``date`` is xsd:dateTime (when exported);
    ``properties`` become header ``PROPERTY`` elements (name -> text)."""
    ET.register_namespace("xsi", _XSI)
    root = ET.Element(
        "ANNOTATION_DOCUMENT",
        {
            "AUTHOR": "vara",
            "DATE": date,
            "FORMAT": "3.0",
            "VERSION": "3.0",
            f"{{{_XSI}}}noNamespaceSchemaLocation": "http://www.mpi.nl/tools/elan/EAFv3.0.xsd",
        },
    )
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    video = Path(timeline.video)
    media = {"MEDIA_URL": video.as_uri() if video.is_absolute() else timeline.video}
    media["MIME_TYPE"] = mimetypes.guess_type(video.name)[0] or "unknown"
    ET.SubElement(header, "MEDIA_DESCRIPTOR", media)
    for name, value in (properties or {}).items():
        ET.SubElement(header, "PROPERTY", {"NAME": name}).text = value
    order = ET.SubElement(root, "TIME_ORDER")
    events = sorted(timeline.events, key=lambda e: (e.start_s, e.end_s, e.label))
    times = sorted(
        (round(t * 1000), i, k)
        for i, e in enumerate(events)
        for k, t in enumerate((e.start_s, e.end_s))
    )
    slot = {}
    for n, (ms, i, k) in enumerate(times, start=1):
        slot[i, k] = f"ts{n}"
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": f"ts{n}", "TIME_VALUE": str(ms)})
    for label in _tier_labels(timeline, labels):
        tier = ET.SubElement(root, "TIER", {"LINGUISTIC_TYPE_REF": "default", "TIER_ID": label})
        for i, e in enumerate(events):
            if e.label != label:
                continue
            refs = {"ANNOTATION_ID": f"a{i + 1}", "TIME_SLOT_REF1": slot[i, 0]}
            refs["TIME_SLOT_REF2"] = slot[i, 1]
            ann = ET.SubElement(ET.SubElement(tier, "ANNOTATION"), "ALIGNABLE_ANNOTATION", refs)
            ET.SubElement(ann, "ANNOTATION_VALUE").text = label
    ET.SubElement(
        root,
        "LINGUISTIC_TYPE",
        {"GRAPHIC_REFERENCES": "false", "LINGUISTIC_TYPE_ID": "default", "TIME_ALIGNABLE": "true"},
    )
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, "unicode") + "\n"


def vtt_time(seconds: float) -> str:
    """``HH:MM:SS.mmm`` (WebVTT allows hours past 99; rounded to the millisecond)."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def vtt_text(timeline: Timeline, note: str = "") -> str:
    """The WebVTT of one video's timeline: a cue per event, in time order; ``note`` (one
    line) a NOTE block before the cues, which players do not show."""
    lines = ["WEBVTT", ""]
    if note:
        lines += ["NOTE " + note.replace("-->", "->").replace("\n", " "), ""]
    events = sorted(timeline.events, key=lambda e: (e.start_s, e.label))
    for n, e in enumerate(events, start=1):
        # A cue's text may not hold "-->" nor a blank line; labels are single-line names.
        text = e.label.replace("-->", "->").replace("\n", " ")
        lines += [str(n), f"{vtt_time(e.start_s)} --> {vtt_time(e.end_s)}", text, ""]
    return "\n".join(lines)


def interval_rows(timelines: Iterable[Timeline]) -> list[list[str]]:
    """The interval-manifest rows of the timelines, header first (module docstring)."""
    rows = [list(INTERVAL_HEADER)]
    for tl in timelines:
        if not tl.events:
            rows.append([tl.video, "", "", ""])
        for e in sorted(tl.events, key=lambda e: (e.start_s, e.label)):
            rows.append([tl.video, e.label, f"{e.start_s:.3f}", f"{e.end_s:.3f}"])
    return rows


def read_intervals(path: str | Path) -> dict[str, list[TimelineEvent]]:
    """An interval CSV (``video,label,start_s,end_s``, e.g. ``intervals.csv``) as events per
    video, the video as written in the file; rows without a label (a video with no events)
    give an empty list."""
    src = Path(path)
    try:
        with open(src, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(INTERVAL_HEADER) - set(reader.fieldnames or ())
            if missing:
                raise InputError(
                    f"{src}: not an interval CSV, missing column(s) {', '.join(sorted(missing))}"
                    f"; expected {','.join(INTERVAL_HEADER)} (what `vara timeline --format csv` "
                    "writes)"
                )
            out: dict[str, list[TimelineEvent]] = {}
            for n, row in enumerate(reader, start=2):
                events = out.setdefault(row["video"], [])
                if not row["label"]:
                    continue
                try:
                    events.append(
                        TimelineEvent(row["label"], float(row["start_s"]), float(row["end_s"]))
                    )
                except ValueError:
                    raise InputError(f"{src}:{n}: start_s/end_s must be numbers") from None
    except OSError as exc:
        raise InputError(f"interval CSV {str(src)!r} cannot be read ({exc.strerror})") from None
    return out
