"""Named studies (``--preset``), defined in ``presets.yml`` next to this module."""

from dataclasses import dataclass
from pathlib import Path

import yaml

from sb3_ppo_variants.compare.hyperparams import ZOO_PREFIX
from sb3_ppo_variants.compare.specs import StudyError

PRESETS_FILE = Path(__file__).with_name("presets.yml")


@dataclass(frozen=True)
class Preset:
    """
    :param name: preset name
    :param envs: Gymnasium ids
    :param objectives: objective specs
    :param seeds: number of seeds
    :param timesteps: budget per run
    :param hyperparams: rl-zoo-style YAML (a path, or ``rl_zoo3:<algo>``)
    """

    name: str
    envs: list[str]
    objectives: list[str]
    seeds: int
    timesteps: int
    hyperparams: str


def available_presets() -> dict[str, Preset]:
    """The presets shipped with the package, by name."""
    presets = {}
    for name, entry in yaml.safe_load(PRESETS_FILE.read_text()).items():
        hyperparams = str(entry["hyperparams"])
        if not hyperparams.startswith(ZOO_PREFIX):
            hyperparams = str(PRESETS_FILE.with_name(hyperparams))
        presets[name] = Preset(
            name=name,
            envs=list(entry["envs"]),
            objectives=[str(spec) for spec in entry["objectives"]],
            seeds=int(entry["seeds"]),
            timesteps=int(entry["timesteps"]),
            hyperparams=hyperparams,
        )
    return presets


def get_preset(name: str) -> Preset:
    """
    :raises StudyError: unknown preset (the message lists the available ones)
    """
    presets = available_presets()
    if name not in presets:
        raise StudyError(f"--preset: unknown preset {name!r}; choose one of {', '.join(presets)}")
    return presets[name]
