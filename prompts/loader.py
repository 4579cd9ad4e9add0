"""Load versioned prompt templates and label sets (data files, not code).

A prompt file is ``<id>.v<N>.yaml`` with the keys of ``PromptFile``; it renders with Jinja2
``StrictUndefined`` so a missing variable fails loudly instead of rendering empty. Its
provenance is (id, version, sha256 of the file bytes plus any schema file it names).
A released version is never edited in place: change a prompt by adding ``<id>.v<N+1>.yaml``.

``prompts_dir`` overrides the packaged prompts: files there shadow packaged ones with the same
id and version, so an experiment can add ``reason.v7.yaml`` without touching the package.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, TypedDict

import jinja2
import yaml

from vara import schemas
from vara.errors import ConfigError, did_you_mean
from vara.types import Label, LabelSet, PromptRef

__all__ = [
    "PromptFile",
    "PromptTemplate",
    "RenderedPrompt",
    "load_prompt",
    "list_prompts",
    "example_variables",
    "load_labelset",
    "labelset_schema",
    "list_labelsets",
]

_NAME = re.compile(r"^(?P<id>[a-z0-9][a-z0-9_-]*)\.v(?P<version>[0-9]+)\.yaml$")
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False
)


class PromptFile(TypedDict, total=False):
    """Keys of a prompt YAML. ``user`` is required; ``schema`` names a sibling JSON file;
    ``tools`` gives the text the model reads about each tool it may call:
    ``{name: {description: str, args: {arg: str}}}`` (the agentic strategy)."""

    description: str
    system: str
    user: str
    schema: str
    tools: dict[str, Any]


@dataclass(frozen=True)
class RenderedPrompt:
    system: str
    user: str


@dataclass(frozen=True, eq=False)
class PromptTemplate:
    id: str
    version: int
    sha256: str
    description: str
    system: str
    user: str
    schema: dict[str, Any] | None
    source: str
    tools: dict[str, Any] | None = None

    @property
    def ref(self) -> PromptRef:
        return PromptRef(id=self.id, version=self.version, sha256=self.sha256)

    @functools.cached_property
    def _compiled(self) -> tuple[jinja2.Template, jinja2.Template]:
        # Compiling is ~100x the cost of rendering; a run renders a template per window.
        return _ENV.from_string(self.system), _ENV.from_string(self.user)

    @functools.cached_property
    def variables(self) -> frozenset[str]:
        """Names the template reads from its caller (``domain``, ``captions`` ...)."""
        from jinja2 import meta

        return frozenset().union(
            *(meta.find_undeclared_variables(_ENV.parse(t)) for t in (self.system, self.user))
        )

    def render(self, **variables: Any) -> RenderedPrompt:
        system_t, user_t = self._compiled
        try:
            system = system_t.render(**variables).strip()
            user = user_t.render(**variables).strip()
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"prompt {self.id}.v{self.version} ({self.source}): {exc.message}; "
                f"pass that variable or remove it from the template"
            ) from None
        return RenderedPrompt(system=system, user=user)


def _packaged() -> Traversable:
    return resources.files("vara.prompts")


def _prompt_files(prompts_dir: str | Path | None) -> dict[tuple[str, int], Traversable | Path]:
    found: dict[tuple[str, int], Traversable | Path] = {}
    roots: list[Traversable | Path] = [_packaged()]
    if prompts_dir is not None:
        root = Path(prompts_dir)
        if not root.is_dir():
            raise ConfigError(f"--prompts-dir {str(root)!r} is not a directory")
        roots.append(root)
    for root in roots:  # later roots shadow earlier ones
        for entry in root.iterdir():
            m = _NAME.match(entry.name)
            if m:
                found[(m["id"], int(m["version"]))] = entry
    return found


def list_prompts(prompts_dir: str | Path | None = None) -> list[tuple[str, int]]:
    return sorted(_prompt_files(prompts_dir))


def load_prompt(ref: str, prompts_dir: str | Path | None = None) -> PromptTemplate:
    """Load ``id`` (latest version) or ``id.vN``."""
    pid, _, ver = ref.partition(".v")
    files = _prompt_files(prompts_dir)
    versions = sorted(v for (i, v) in files if i == pid)
    if not versions:
        known = sorted({i for i, _ in files})
        hint = did_you_mean(pid, known)
        raise ConfigError(f"prompt {ref!r} not found{hint}; known prompt ids: {known}")
    if ver and (not ver.isdigit() or int(ver) not in versions):
        raise ConfigError(f"prompt {ref!r} not found; versions of {pid!r}: {versions}")
    version = int(ver) if ver else versions[-1]
    entry = files[(pid, version)]
    raw = entry.read_bytes()
    digest = hashlib.sha256(raw)
    try:
        data: PromptFile = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"prompt file {entry}: invalid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("user"), str):
        raise ConfigError(f"prompt file {entry}: needs a 'user' template string")
    unknown = set(data) - set(PromptFile.__annotations__)
    if unknown:
        raise ConfigError(f"prompt file {entry}: unknown keys {sorted(unknown)}")
    _check_tools(entry, data.get("tools"))
    schema = None
    if data.get("schema"):
        # Beside the prompt first, then the packaged prompts: an experiment's reason.v2.yaml
        # may reuse answer.v1.schema.json.
        for folder in (entry.parent, _packaged()):  # type: ignore[union-attr]
            try:
                schema_bytes = folder.joinpath(data["schema"]).read_bytes()
                break
            except OSError:
                continue
        else:
            raise ConfigError(
                f"prompt file {entry}: schema file {data['schema']!r} is neither beside it "
                f"nor among the packaged prompts"
            )
        digest.update(schema_bytes)
        schema = json.loads(schema_bytes)
    return PromptTemplate(
        id=pid,
        version=version,
        sha256=digest.hexdigest(),
        description=data.get("description", ""),
        system=data.get("system", ""),
        user=data["user"],
        schema=schema,
        source=str(entry),
        tools=data.get("tools"),
    )


def _check_tools(entry: Any, tools: Any) -> None:
    if tools is None:
        return
    ok = isinstance(tools, dict) and all(
        isinstance(t, dict)
        and isinstance(t.get("description"), str)
        and isinstance(t.get("args", {}), dict)
        and all(isinstance(v, str) for v in t.get("args", {}).values())
        for t in tools.values()
    )
    if not ok:
        raise ConfigError(
            f"prompt file {entry}: 'tools' must map each tool name to "
            "{description: text, args: {arg: text}}"
        )


# What example_variables derives from the label set (and a label set's section may give).
_DERIVED = ("labelset", "domain", "label", "scores", "predicted", "truth", "error")


def example_variables(labelset: LabelSet) -> dict[str, Any]:
    """Variables that render every packaged prompt: prompts/examples.yaml (with the label
    set's own section, if it has one) and the label set.

    Their names are every variable vara's steps pass to some prompt (the snapshot tests
    render each packaged prompt with them), so ``unknown_variables`` can use them."""
    examples = _examples()
    own = examples.pop("by_labelset").get(labelset.name, {})
    names = list(labelset.names)
    # Made-up scores for the first labels; the top one predicted.
    scores = [
        {"label": n, "prob": p, "threshold": t}
        for n, p, t in zip(names, (0.91, 0.12, 0.03), (0.42, 0.5, 0.37), strict=False)
    ]
    bad = own.pop("invalid_label", "Other")
    error = f"the JSON does not match the schema at labels/0: {bad!r} is not one of {names}"
    return {
        **examples,
        "scores": scores,
        "predicted": names[:1],
        "truth": names[:1],  # the teacher's true labels (finetune/sft_targets.py)
        "error": error,
        **own,
        "labelset": labelset,
        "domain": labelset.description,
        "label": labelset.labels[0],
    }


def _examples() -> dict[str, Any]:
    return yaml.safe_load(_packaged().joinpath("examples.yaml").read_text())


def unknown_variables(prompt: PromptTemplate) -> str | None:
    """A message naming the variables ``prompt`` reads that no step of vara provides (a typo
    that would fail every window), else None."""
    known = {*_examples(), *_DERIVED} - {"by_labelset"}
    unknown = sorted(prompt.variables - known)
    if not unknown:
        return None
    return (
        f"prompt {prompt.id}.v{prompt.version} ({prompt.source}) reads {unknown}"
        f"{did_you_mean(unknown[0], known)}, which vara never passes; the variables are "
        f"{sorted(known)}"
    )


def list_labelsets() -> list[str]:
    root = _packaged().joinpath("labelsets")
    return sorted(e.name[: -len(".yaml")] for e in root.iterdir() if e.name.endswith(".yaml"))


def load_labelset(name_or_path: str | Path) -> LabelSet:
    """A packaged label set by name (``newborn-resuscitation``) or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"label set file {str(path)!r} not found")
        raw = path.read_text()
        source = str(path)
    else:
        entry = _packaged().joinpath("labelsets", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ConfigError(
                f"label set {str(name_or_path)!r} not found"
                f"{did_you_mean(str(name_or_path), list_labelsets())}; packaged: "
                f"{list_labelsets()} (or pass a path to your own .yaml)"
            )
        raw = entry.read_text()
        source = str(name_or_path)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"label set {source}: invalid YAML ({exc})") from None
    schemas.check(data, labelset_schema(), f"label set {source}")
    try:
        return LabelSet(
            name=data["name"],
            description=" ".join(data.get("description", "").split()),
            multi_label=data["multi_label"],
            labels=tuple(
                Label(
                    name=lab["name"],
                    description=" ".join(lab["description"].split()),
                    synonyms=tuple(lab.get("synonyms", ())),
                )
                for lab in data["labels"]
            ),
            rules=tuple(data.get("rules", ())),
            exclusive=tuple(tuple(g) for g in data.get("exclusive", ())),
        )
    except ValueError as exc:  # LabelSet's own checks: repeated labels, unknown exclusive
        raise ConfigError(f"label set {source}: {exc}") from None


def labelset_schema() -> dict[str, Any]:
    """The JSON schema a label-set file must satisfy (prompts/labelset.schema.json)."""
    return json.loads(_packaged().joinpath("labelset.schema.json").read_text())
