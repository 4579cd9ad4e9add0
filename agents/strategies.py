"""Strategy files: packaged ``strategies/<name>.yaml`` (the file stem is the registry key) or
any YAML path, with ``key.sub=value`` overrides, validated before anything runs."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from vara.agents.graph import check_strategy
from vara.config import StrategyConfig, apply_overrides, parse_strategy
from vara.errors import ConfigError, did_you_mean

__all__ = ["list_strategies", "load_strategy"]


def list_strategies() -> list[str]:
    root = resources.files("vara.agents").joinpath("strategies")
    return sorted(e.name[: -len(".yaml")] for e in root.iterdir() if e.name.endswith(".yaml"))


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
    config = parse_strategy(apply_overrides(data, list(overrides)), source=source)
    check_strategy(config, source)
    return config
