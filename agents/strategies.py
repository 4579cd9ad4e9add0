"""Strategy files: packaged ``strategies/<name>.yaml`` (the file stem is the registry key) or
any YAML path, with ``key.sub=value`` overrides, validated before anything runs.

The JSON schema (``vara/strategy.schema.json``) is completed here from the registries, so
that ``graph`` and ``scorer.kind`` must name a registered graph and scorer kind.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from vara import config
from vara.agents.registry import GRAPHS, check_strategy, graph_spec
from vara.config import StrategyConfig, apply_overrides, parse_strategy
from vara.errors import ConfigError, did_you_mean
from vara.prompts.loader import PromptTemplate, load_prompt, unknown_variables
from vara.tools.scorer import SCORERS
from vara.tools.vocab import load_vocabulary, with_vocabulary

__all__ = ["list_strategies", "load_strategy", "strategy_prompts", "strategy_schema"]


def list_strategies() -> list[str]:
    root = resources.files("vara.agents").joinpath("strategies")
    return sorted(e.name[: -len(".yaml")] for e in root.iterdir() if e.name.endswith(".yaml"))


def strategy_schema() -> dict[str, Any]:
    """The packaged schema with the registered graphs and scorer kinds as enums."""
    schema = config.strategy_schema()
    props = schema["properties"]
    props["graph"]["enum"] = sorted(GRAPHS)
    props["scorer"]["properties"]["kind"]["enum"] = sorted(SCORERS)
    return schema


def load_strategy(
    name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> StrategyConfig:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"strategy file {str(path)!r} not found")
        text, source = path.read_text(), str(path)
    else:
        entry = resources.files("vara.agents").joinpath("strategies", f"{name_or_path}.yaml")
        if not entry.is_file():
            raise ConfigError(
                f"strategy {str(name_or_path)!r} not found"
                f"{did_you_mean(str(name_or_path), list_strategies())}; packaged: "
                f"{list_strategies()} (or pass a path to your own .yaml)"
            )
        text, source = entry.read_text(), str(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"strategy {source}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"strategy {source}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides))
    strategy = parse_strategy(data, source=source, schema=strategy_schema())
    check_strategy(strategy, source)
    return strategy


def strategy_prompts(
    strategy: StrategyConfig, prompts_dir: str | Path | None = None
) -> dict[str, PromptTemplate]:
    """Role -> template for every prompt the strategy names, checked before any window: each
    renders only variables it is given, and each structured role's prompt names a schema."""
    check_strategy(strategy, strategy.name)
    structured = graph_spec(strategy.graph).structured_roles
    prompts = {role: load_prompt(ref, prompts_dir) for role, ref in strategy.prompts.items()}
    if strategy.tokens.vocab and "tokens" in prompts:
        # enum fields, and a hash covering the vocabulary: provenance and resume name it
        vocab = load_vocabulary(strategy.tokens.vocab)
        prompts["tokens"] = with_vocabulary(prompts["tokens"], vocab)
    for role, prompt in prompts.items():
        problem = unknown_variables(prompt)
        if problem:
            raise ConfigError(problem)
        if role in structured and prompt.schema is None:
            raise ConfigError(
                f"prompt {strategy.prompts[role]!r} (role {role}) names no schema file; "
                f"add `schema: <file>.schema.json` to it"
            )
    return prompts
