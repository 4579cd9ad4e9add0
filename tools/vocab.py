"""A closed semantic-token vocabulary: built from free-text per-frame tags, used as enums.

The semantic-tokens strategy tags each frame with short phrases (actors, actions, objects,
body parts, tools, motion). Free text spells one thing many ways ("Nurses", "a nurse"), so
a narrative of it is noisy and never discrete. ``build_vocabulary`` turns the tags of a
finished run into a closed vocabulary per field:

1. every tag is normalised (``normalise``): lower case, possessive ``'s`` and punctuation
   other than ``-`` dropped, the articles a/an/the dropped, each word made singular by plain
   English suffix rules (``-ies`` -> ``-y``; ``-ches -shes -xes -sses -zzes`` lose ``-es``;
   else a final ``-s`` goes, except after ``ss``/``us``/``is``, on words of <= 3 letters and
   on a short list of plural-only nouns), then a label-set synonym becomes its label's name;
2. the ``top_k`` most frequent forms of each field are kept (ties by alphabetical order);
3. every other form maps to the kept token most similar to it by ``difflib``'s
   ``SequenceMatcher.ratio`` (2 x matching characters / total characters) when that is
   >= ``min_similarity``, else to ``other``. Every mapping is recorded with its count,
   similarity and the raw spellings seen.

``vocab_schema`` makes the per-frame tag schema use the vocabulary as ``enum``s, so
constrained decoding on the server can only emit vocabulary tokens. The file is versioned
(``format``/``version``) and its ``sha256`` covers everything but where it was built from,
so the same tags with the same settings give the same hash anywhere.

The narrative a window's tags are shown as (spans, their text) is ``tools.narrative``'s.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import logging
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vara.errors import InputError
from vara.prompts.loader import PromptTemplate
from vara.records import write_json_atomic
from vara.tools.reason import TAG_FIELDS
from vara.types import LabelSet

__all__ = [
    "FORMAT",
    "OTHER",
    "FieldVocab",
    "TokenMapping",
    "Vocabulary",
    "build_vocabulary",
    "load_vocabulary",
    "normalise",
    "similarity",
    "synonym_map",
    "vocab_schema",
    "with_vocabulary",
    "write_vocabulary",
]

log = logging.getLogger(__name__)

FORMAT = "vara-vocab"
VERSION = 1
OTHER = "other"  # the token every form without a close kept token maps to
NORMALISATION = "v1: lower case, no punctuation but '-', no articles, singular words, synonyms"
DEFAULT_TOP_K = 20
DEFAULT_MIN_SIMILARITY = 0.8

_ARTICLES = frozenset({"a", "an", "the"})
# Nouns whose final -s is no plural suffix (the rules below would cut it).
_PLURAL_ONLY = frozenset(
    {"glasses", "scissors", "forceps", "tongs", "pants", "clothes", "series", "species", "news"}
)


def _singular(word: str) -> str:
    if len(word) <= 3 or word in _PLURAL_ONLY or not word.endswith("s"):
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "zzes")):
        return word[:-2]
    return word[:-1]


def normalise(tag: str, synonyms: Mapping[str, str] | None = None) -> str:
    """The canonical form of one tag (see the module docstring); "" when nothing is left."""
    text = unicodedata.normalize("NFKC", str(tag)).lower()
    text = re.sub(r"['\u2019]s\b", "", text)
    text = re.sub(r"[^\w\s-]+", " ", text).replace("_", " ")
    text = re.sub(r"\s*-\s*", "-", text).strip("- ")
    words = [_singular(w) for w in text.split() if w not in _ARTICLES]
    form = " ".join(words)
    return (synonyms or {}).get(form, form)


def synonym_map(labelset: LabelSet | None) -> dict[str, str]:
    """Normalised synonym -> normalised label name, for every label of ``labelset``."""
    if labelset is None:
        return {}
    out = {}
    for label in labelset.labels:
        name = normalise(label.name)
        for syn in label.synonyms:
            if normalise(syn) and normalise(syn) != name:
                out[normalise(syn)] = name
    return out


def similarity(a: str, b: str) -> float:
    """``difflib.SequenceMatcher(None, a, b).ratio()``: 1.0 equal, 0.0 nothing in common."""
    return difflib.SequenceMatcher(None, a, b).ratio()


@dataclass(frozen=True)
class TokenMapping:
    """Where one normalised form went: ``how`` is kept | nearest | other."""

    form: str
    count: int
    token: str
    how: str
    similarity: float
    seen_as: tuple[str, ...]  # the raw spellings of the form, most frequent first

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "seen_as": list(self.seen_as)}


@dataclass(frozen=True)
class FieldVocab:
    tokens: tuple[str, ...]  # kept, most frequent first
    mappings: tuple[TokenMapping, ...]  # every form seen, most frequent first

    @property
    def choices(self) -> list[str]:
        """What the schema allows: the kept tokens, then ``other``."""
        return [*self.tokens, OTHER] if OTHER not in self.tokens else list(self.tokens)


@dataclass(frozen=True)
class Vocabulary:
    """Per-field closed vocabularies with the settings that built them (see module doc)."""

    fields: dict[str, FieldVocab]
    top_k: int
    min_similarity: float
    labelset: str | None = None
    synonyms: dict[str, str] | None = None  # applied by ``map`` as when it was built

    def content(self) -> dict[str, Any]:
        """Everything the hash covers: the format, settings and every field's mappings."""
        settings = {
            "top_k": self.top_k,
            "min_similarity": self.min_similarity,
            "labelset": self.labelset,
            "synonyms": dict(sorted((self.synonyms or {}).items())),
            "normalisation": NORMALISATION,
        }
        fields = {
            name: {"tokens": list(f.tokens), "mappings": [m.to_dict() for m in f.mappings]}
            for name, f in self.fields.items()
        }
        return {"format": FORMAT, "version": VERSION, "settings": settings, "fields": fields}

    @functools.cached_property
    def sha256(self) -> str:
        text = json.dumps(self.content(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def map(self, field: str, tag: str) -> str | None:
        """The vocabulary token for a raw tag of ``field`` (None when it normalises to "")."""
        form = normalise(tag, self.synonyms)
        if not form:
            return None
        vocab = self.fields[field]
        known = {m.form: m.token for m in vocab.mappings}
        if form in known:
            return known[form]
        token, _ = _nearest(form, vocab.tokens, self.min_similarity)
        return token


def _nearest(form: str, tokens: Sequence[str], min_similarity: float) -> tuple[str, float]:
    """The kept token most similar to ``form`` (earlier = more frequent wins a tie), or
    ``other`` when none reaches ``min_similarity``."""
    best, score = OTHER, 0.0
    for token in tokens:
        s = similarity(form, token)
        if s > score:
            best, score = token, s
    return (best, round(score, 4)) if score >= min_similarity else (OTHER, round(score, 4))


def _field_vocab(raw: Iterable[str], top_k: int, min_similarity: float, synonyms) -> FieldVocab:
    counts: Counter[str] = Counter()
    spellings: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for tag in raw:
        form = normalise(tag, synonyms)
        if form:
            counts[form] += 1
            spellings[form][str(tag)] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = tuple(f for f, _ in ranked if f != OTHER)[:top_k]
    mappings = []
    for form, n in ranked:
        seen = tuple(s for s, _ in sorted(spellings[form].items(), key=lambda kv: (-kv[1], kv[0])))
        if form in kept:
            mappings.append(TokenMapping(form, n, form, "kept", 1.0, seen))
            continue
        token, score = _nearest(form, kept, min_similarity)
        how = "nearest" if token != OTHER else "other"
        mappings.append(TokenMapping(form, n, token, how, score, seen))
    return FieldVocab(tokens=kept, mappings=tuple(mappings))


def _field_values(frame: Mapping[str, Any], field: str) -> list[str]:
    value = frame.get(field)
    if isinstance(value, str):
        return [value] if value.strip() else []
    return [str(v) for v in value or ()]


def build_vocabulary(
    frames: Sequence[Mapping[str, Any]],
    *,
    top_k: int = DEFAULT_TOP_K,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
    labelset: LabelSet | None = None,
) -> Vocabulary:
    """The vocabulary of ``frames`` (per-frame tag dicts with the keys of TAG_FIELDS)."""
    if top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {top_k}")
    if not 0.0 < min_similarity <= 1.0:
        raise InputError(f"--min-similarity must be in (0, 1], got {min_similarity}")
    synonyms = synonym_map(labelset)
    fields = {
        field: _field_vocab(
            (v for f in frames for v in _field_values(f, field)), top_k, min_similarity, synonyms
        )
        for field in TAG_FIELDS
    }
    name = labelset.name if labelset is not None else None
    return Vocabulary(fields, top_k, min_similarity, name, synonyms)


def write_vocabulary(vocab: Vocabulary, path: str | Path, sources: Sequence[dict]) -> Path:
    """``vocab`` as JSON with its sha256 and ``sources`` (where the tags came from)."""
    content = vocab.content()
    doc = {**content, "sha256": vocab.sha256, "sources": list(sources)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc)
    return path


def _from_doc(doc: dict[str, Any], source: str) -> Vocabulary:
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise InputError(
            f"vocabulary {source!r} is not a {FORMAT} v{VERSION} file (format "
            f"{doc.get('format')!r}, version {doc.get('version')!r}): build one with "
            f"`vara tokens vocab RUN_DIR --out vocab.json`"
        )
    settings = doc["settings"]
    fields = {}
    for name in TAG_FIELDS:
        raw = doc["fields"].get(name, {"tokens": [], "mappings": []})
        mappings = tuple(
            TokenMapping(**{**m, "seen_as": tuple(m.get("seen_as", ()))}) for m in raw["mappings"]
        )
        fields[name] = FieldVocab(tuple(raw["tokens"]), mappings)
    return Vocabulary(
        fields,
        int(settings["top_k"]),
        float(settings["min_similarity"]),
        settings.get("labelset"),
        dict(settings.get("synonyms") or {}),
    )


def load_vocabulary(path: str | Path) -> Vocabulary:
    """Read a vocabulary file; the hash is recomputed from its content (a hand-edited file
    is a new vocabulary, and says so in the log)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(
            f"vocabulary {str(path)!r} not found: build one with "
            f"`vara tokens vocab RUN_DIR --out {path}`"
        )
    st = p.stat()
    return _load_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, _mtime_ns: int, _size: int) -> Vocabulary:
    """Once per file version: every window of a run asks for it."""
    try:
        doc = json.loads(Path(path).read_text())
        vocab = _from_doc(doc, path)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(
            f"vocabulary {path!r} is not valid ({type(exc).__name__}: {exc}); rebuild it with "
            f"`vara tokens vocab RUN_DIR --out {path}`"
        ) from None
    if doc.get("sha256") != vocab.sha256:
        log.warning(
            "vocabulary %s was edited since it was built; its sha256 is now %s", path, vocab.sha256
        )
    return vocab


def _resolve(schema: dict[str, Any], prop: dict[str, Any]) -> dict[str, Any]:
    ref = prop.get("$ref")
    if ref is None:
        return prop
    return schema["$defs"][ref.rsplit("/", 1)[-1]]


def vocab_schema(template: dict[str, Any], vocab: Vocabulary) -> dict[str, Any]:
    """The per-frame tag schema with each field an ``enum`` of its vocabulary (lists keep
    their ``maxItems``; ``motion``, one string, may also be "" for no motion). Applying it
    to its own output changes nothing."""
    schema = copy.deepcopy(template)
    props = schema["properties"]["frames"]["items"]["properties"]
    for field in TAG_FIELDS:
        if field not in props:
            raise InputError(f"the tokens schema has no field {field!r}; it lists {sorted(props)}")
        prop = _resolve(schema, props[field])
        choices = vocab.fields[field].choices
        if prop.get("type") == "string":
            props[field] = {"type": "string", "enum": ["", *choices]}
        else:
            items = {"type": "string", "enum": choices}
            props[field] = {"type": "array", "maxItems": prop.get("maxItems", 2), "items": items}
    return schema


def with_vocabulary(prompt: PromptTemplate, vocab: Vocabulary) -> PromptTemplate:
    """The tokens prompt under ``vocab``: enum fields, and a sha256 that covers the
    vocabulary, so its PromptRef (a prediction's provenance, a run's resume fingerprint)
    names the vocabulary too. For the strategy loader, where prompts are loaded."""
    combined = hashlib.sha256(f"{prompt.sha256}:{vocab.sha256}".encode()).hexdigest()
    return dataclasses.replace(prompt, schema=vocab_schema(prompt.schema, vocab), sha256=combined)
