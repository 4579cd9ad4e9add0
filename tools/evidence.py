"""Checked evidence: every quote a model gives as evidence is looked for in what it cites.

The schema already restricts WHICH refs an answer may cite (the window's captions, frame
times, tool results); this checks WHAT it says they say. Each evidence item's ``text`` is
compared with the text behind its ref (a caption, a frame's semantic tokens, a tool's
result) after normalising both (case, punctuation and spacing ignored):

- a quote found whole in its source is verified;
- otherwise its score is the share of its characters that appear, in order, in runs of at
  least ``MIN_RUN`` characters of the source (``difflib``); at ``QUOTE_THRESHOLD`` (0.85) or
  more it is verified (a word changed in a long quote), below it not.

A ref whose source has no text (a frame the VLM looked at: ``t=0.25s`` in ``direct``) cannot
be checked: its item stays ``verified=None``. A failed check is an ``AnswerInvalid`` naming
each quote that was not found, so the answer is re-asked like any other invalid one; on the
last allowed answer the evidence is kept, marked ``verified=False``, never shown as checked.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

from vara.tools.reason import AnswerInvalid
from vara.types import Evidence

__all__ = [
    "MIN_RUN",
    "QUOTE_THRESHOLD",
    "check_evidence",
    "normalise",
    "quote_score",
    "sources_of",
]

QUOTE_THRESHOLD = 0.85
MIN_RUN = 3  # characters: shorter common runs (single letters, "th") are chance
_NOT_WORD = re.compile(r"[^\w]+")

Sources = Mapping[str, str | None]  # ref -> the text it stands for; None: no text (a frame)


def sources_of(items: Sequence[Mapping[str, Any]]) -> dict[str, str | None]:
    """ref -> text of the items a prompt shows (``tools.reason.caption_items``, tool results):
    what their quotes must come from."""
    return {item["ref"]: item["text"] for item in items}


def normalise(text: str) -> str:
    """Lower case, punctuation and runs of spacing as one space."""
    return " ".join(_NOT_WORD.sub(" ", text.lower()).split())


def quote_score(quote: str, source: str) -> float:
    """1.0 when ``quote`` is in ``source`` (normalised); else the share of its characters in
    runs of >= MIN_RUN characters that ``source`` has in the same order."""
    q, s = normalise(quote), normalise(source)
    if not q:
        return 0.0
    if q in s:
        return 1.0
    blocks = difflib.SequenceMatcher(None, q, s, autojunk=False).get_matching_blocks()
    return sum(b.size for b in blocks if b.size >= MIN_RUN) / len(q)


def check_evidence(
    evidence: Sequence[Evidence], sources: Sources, *, final: bool
) -> tuple[Evidence, ...]:
    """``evidence`` with ``verified`` set; raises AnswerInvalid on quotes not found in their
    source unless ``final`` (then they are kept, marked unverified)."""
    out, missing = [], []
    for i, e in enumerate(evidence, start=1):
        source = sources.get(e.ref)
        if source is None:
            out.append(dataclasses.replace(e, verified=None))
            continue
        ok = quote_score(e.text, source) >= QUOTE_THRESHOLD
        out.append(dataclasses.replace(e, verified=ok))
        if not ok:
            missing.append(f"evidence {i} quotes {e.text!r}, which {e.ref} does not say")
    if missing and not final:
        raise AnswerInvalid(
            "; ".join(missing) + ": quote the cited text's own words as evidence, or cite "
            "what does say it"
        )
    return tuple(out)
