"""``vara finetune CONFIG``: find the config (a YAML path or a packaged ``configs/<name>``),
read its ``recipe`` key and run that recipe. Recipes are a plain dict, not dotted paths."""

from __future__ import annotations

import importlib
from importlib import resources
from pathlib import Path

import yaml

from vara.errors import ConfigError

__all__ = ["RECIPES", "list_configs", "resolve_config", "run_config"]

# recipe key -> module under vara.finetune with ``main(config, overrides, progress=)``
RECIPES = {
    "lora_classifier": "lora_classifier",
    "timesformer": "timesformer",
    "clip_noise": "clip_noise",
    "lvlm_sft": "lvlm_sft",
}


def list_configs() -> list[str]:
    root = resources.files("vara.finetune").joinpath("configs")
    return sorted(e.name[: -len(".yaml")] for e in root.iterdir() if e.name.endswith(".yaml"))


def resolve_config(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"finetune config '{path}' not found")
        return path
    entry = resources.files("vara.finetune").joinpath("configs", f"{name_or_path}.yaml")
    if not entry.is_file():
        raise ConfigError(
            f"finetune config {name_or_path!r} not found; packaged: {list_configs()} "
            "(or pass a path to your own .yaml)"
        )
    return Path(str(entry))


def run_config(name_or_path: str, overrides: list[str], *, progress: bool = True) -> Path:
    path = resolve_config(name_or_path)
    recipe = (yaml.safe_load(path.read_text()) or {}).get("recipe")
    if recipe not in RECIPES:
        raise ConfigError(f"{path}: recipe {recipe!r} is not one of {sorted(RECIPES)}")
    module = importlib.import_module(f"vara.finetune.{RECIPES[recipe]}")
    return module.main(str(path), overrides, progress=progress)
