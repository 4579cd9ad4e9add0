"""Errors a user sees: each message names the input and says what to do.

The CLI prints ``VaraError`` messages as one line (no traceback); everything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'n_frames'?)"`` for a close match among ``choices``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class VaraError(Exception):
    """Base class: the message is complete and user-facing."""


class InputError(VaraError):
    """A file, manifest or argument the user gave is missing or malformed."""


class VideoError(InputError):
    """A video cannot be opened or decoded."""


class ConfigError(VaraError):
    """A strategy, prompt or label-set file is invalid."""


class EndpointError(VaraError):
    """A model server is unreachable, rejected a request, or gave an unusable reply."""


class EndpointUnreachable(EndpointError):
    """No server answers at the URL: the whole run stops (exit status 3), not each window
    fails; a re-run resumes once the server is back."""


class StructuredOutputError(VaraError):
    """A model answer failed schema validation after the allowed re-asks.

    ``raw`` keeps every answer text so nothing the model said is lost.
    """

    def __init__(self, message: str, raw: tuple[str, ...] = ()):
        super().__init__(message)
        self.raw = raw
