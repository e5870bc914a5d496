"""
The one rl-baselines3-zoo adapter of the package, shared by ``zoo/`` (train, enjoy, tuning) and ``compare/``:

- the algorithm registry: rl-zoo keys → classes, and for each variant of this package the baselines that
  ``compare --baselines`` adds (one :func:`register_algo` call per algorithm), and :func:`register`, which puts them
  into rl-zoo's own registries;
- the env id check, after importing ``--gym-packages`` (and the module of gymnasium's ``module:EnvId`` form);
- rl-zoo's ``key:value`` options (``--hyperparams``, ``--env-kwargs``), evaluated as rl-zoo's ``StoreDict`` does.

The hyperparameter check and the conversion of ``lin_`` schedule strings (``kl_target`` included) are done by
:class:`~sb3_ppo_variants.zoo.overrides.PPOVariantExperimentManager`, which both ``zoo`` and ``compare`` use.
"""

import difflib
import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class ZooConfigError(ValueError):
    """A bad rl-zoo set-up (hyperparameter, env id, command-line value), found before any run folder or env exists."""


@dataclass(frozen=True)
class Algo:
    """
    An algorithm known to rl-zoo and ``compare``.

    :param key: rl-zoo algorithm key (``--algo``)
    :param path: ``"module:Class"`` of its class, imported when first needed
    :param title: display name in reports
    :param variant: whether it is a PPO variant of this package (it takes ``objective``; ``compare --algo``)
    :param baselines: for a variant, the algorithms ``compare --baselines`` adds, the one it extends first
    :param sampler: ``"module:function"``, the Optuna sampler of rl-zoo's ``-optimize``
    :param converter: ``"module:function"``, what turns a trial's Optuna parameters back into hyperparameters (rl-zoo's
        ``--trial-id``); used with ``sampler``
    :param maskable: whether it plays with the env's action masks (``predict(..., action_masks=...)``): its evaluation
        during training and tuning, ``enjoy`` and ``record-video`` pass them (:mod:`sb3_ppo_variants.zoo.evaluation`)
    """

    key: str
    path: str
    title: str
    variant: bool = False
    baselines: tuple[str, ...] = ()
    sampler: str | None = None
    converter: str = "rl_zoo3.hyperparams_opt:convert_onpolicy_params"
    maskable: bool = False

    def load(self) -> Any:
        """The class named by :attr:`path`."""
        return import_path(self.path)


def import_path(path: str) -> Any:
    """The object named by ``"module:name"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


#: The package's algorithm registry (rl-zoo key → :class:`Algo`); rl-zoo's own is ``rl_zoo3.utils.ALGOS`` (key → class).
REGISTRY: dict[str, Algo] = {}


def register_algo(algo: Algo) -> None:
    """Make ``algo`` known to ``zoo.register()`` (rl-zoo's ``--algo``) and ``compare`` (``--algo``, ``--baselines``)."""
    REGISTRY[algo.key] = algo


register_algo(
    Algo(
        "ppo_variant",
        "sb3_ppo_variants.ppo_variant:PPOVariant",
        "PPOVariant",
        variant=True,
        baselines=("ppo", "trpo", "a2c"),
        sampler="sb3_ppo_variants.zoo.sampler:sample_ppo_variant_params",
        converter="sb3_ppo_variants.zoo.sampler:convert_variant_params",
    )
)
register_algo(
    Algo(
        "ppo_mask_variant",
        "sb3_ppo_variants.maskable:MaskablePPOVariant",
        "MaskablePPOVariant",
        variant=True,
        baselines=("ppo_mask",),
        sampler="sb3_ppo_variants.zoo.sampler:sample_ppo_variant_params",
        converter="sb3_ppo_variants.zoo.sampler:convert_variant_params",
        maskable=True,
    )
)
register_algo(
    Algo(
        "ppo_lstm_variant",
        "sb3_ppo_variants.recurrent:RecurrentPPOVariant",
        "RecurrentPPOVariant",
        variant=True,
        baselines=("ppo_lstm",),
        sampler="sb3_ppo_variants.zoo.sampler:sample_ppo_lstm_variant_params",
        converter="sb3_ppo_variants.zoo.sampler:convert_variant_params",
    )
)
register_algo(
    Algo(
        "ppo_mask_lstm_variant",
        "sb3_ppo_variants.maskable_recurrent:MaskableRecurrentPPOVariant",
        "MaskableRecurrentPPOVariant",
        variant=True,
        baselines=("ppo_lstm", "ppo_mask"),
        sampler="sb3_ppo_variants.zoo.sampler:sample_ppo_lstm_variant_params",
        converter="sb3_ppo_variants.zoo.sampler:convert_variant_params",
        maskable=True,
    )
)
register_algo(Algo("ppo", "stable_baselines3:PPO", "SB3 PPO"))
register_algo(Algo("trpo", "sb3_contrib:TRPO", "TRPO (sb3-contrib)"))
register_algo(Algo("a2c", "stable_baselines3:A2C", "A2C (SB3)"))
# rl-zoo has no MaskablePPO search space; its PPO one fits (the variants' sampler extends it too).
register_algo(
    Algo(
        "ppo_mask",
        "sb3_contrib:MaskablePPO",
        "MaskablePPO (sb3-contrib)",
        sampler="rl_zoo3.hyperparams_opt:sample_ppo_params",
        maskable=True,
    )
)
register_algo(Algo("ppo_lstm", "sb3_contrib:RecurrentPPO", "RecurrentPPO (sb3-contrib)"))


def variant_keys() -> list[str]:
    """Keys of the registered variants (``compare --algo`` choices)."""
    return [key for key, algo in REGISTRY.items() if algo.variant]


def uses_action_masks(key: str) -> bool:
    """Whether the algorithm of an rl-zoo key plays with the env's action masks (its registry entry's ``maskable``)."""
    return key in REGISTRY and REGISTRY[key].maskable


def algorithm_class(key: str) -> type:
    """The class of an algorithm key: a registered one, else one of rl_zoo3's ``ALGOS``."""
    if key in REGISTRY:
        return REGISTRY[key].load()
    import rl_zoo3.utils

    return rl_zoo3.utils.ALGOS[key]


def register() -> None:
    """
    Make ``ppo_variant`` (and every algorithm registered with :func:`register_algo`) an rl-zoo algorithm in this
    process (idempotent), through rl-zoo's registries:

    - ``rl_zoo3.utils.ALGOS["ppo_variant"] = PPOVariant`` (``--algo`` choices, ``enjoy``'s loading);
    - for algorithms with a sampler (the variants, ``ppo_mask``), ``HYPERPARAMS_SAMPLER[key]`` (``-optimize``) and
      ``HYPERPARAMS_CONVERTER[key]`` (``--trial-id``: rl-zoo's on-policy converter; for the variants after the
      objective's own parameters are put back into ``objective_kwargs``).

    :func:`train` also runs rl-zoo's ``train`` with :class:`PPOVariantExperimentManager` (the shipped default
    hyperparameter file, ``kl_target`` schedules, early checks and masked evaluation for maskable algorithms).
    """
    import rl_zoo3.utils
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

    for key, algo in REGISTRY.items():
        rl_zoo3.utils.ALGOS.setdefault(key, algo.load())
        if algo.sampler is not None:
            HYPERPARAMS_SAMPLER[key] = import_path(algo.sampler)
            HYPERPARAMS_CONVERTER[key] = import_path(algo.converter)


def check_env_id(env_id: str, gym_packages: Iterable[str] = (), flag: str = "--env") -> str:
    """
    Import ``gym_packages`` (rl-zoo's ``--gym-packages``) and, for gymnasium's ``module:EnvId`` form, ``module``; then
    check that the id is registered.

    :param env_id: ``EnvId`` or ``module:EnvId``
    :param gym_packages: modules that register envs when imported
    :param flag: the option that gave ``env_id``, for the error message
    :return: the registered id (``EnvId`` of ``module:EnvId``)
    :raises ZooConfigError: a module that cannot be imported, or an unknown id (with the closest registered one)
    """
    import gymnasium as gym
    import rl_zoo3.import_envs  # noqa: F401 (registers the extra envs rl-zoo knows, as rl-zoo's train does)

    module, _, name = env_id.rpartition(":")
    for package, source in [*((package, "--gym-packages") for package in gym_packages), *([(module, flag)] if module else [])]:
        try:
            importlib.import_module(package)
        except ImportError as error:
            raise ZooConfigError(f"{source} {package}: cannot import the module ({error}); is it installed?") from None
    if name in gym.envs.registry:
        return name
    close = difflib.get_close_matches(name, list(gym.envs.registry), n=1)
    packages = [*gym_packages, *([module] if module else [])]
    imported = f" after importing {', '.join(packages)}" if packages else ""
    raise ZooConfigError(
        f"{flag} {env_id}: unknown environment id {name!r} (not in gymnasium's registry{imported})"
        + (f"; did you mean {close[0]!r}?" if close else "")
        + ". Envs from other packages need --gym-packages <module> (or the id module:EnvId)."
    )


def evaluate_key_values(flag: str, items: Iterable[str]) -> dict[str, Any]:
    """
    rl-zoo's ``key:value`` options as its ``StoreDict`` reads them: each value is a Python expression (evaluated with
    rl_zoo3.utils' names, e.g. ``nn``), so strings must be quoted: ``objective:"'adaptive_kl'"``.

    :param flag: the option, for the error message
    :param items: its ``key:value`` words
    :raises ZooConfigError: naming the option, the item and the accepted form
    """
    items = list(items)
    if not items:
        return {}
    import rl_zoo3.utils

    values = {}
    for item in items:

        key, separator, value = item.partition(":")
        if not separator or not key:
            raise ZooConfigError(f"{flag} {item}: expected key:value, e.g. {flag} max_episode_steps:100")
        try:
            values[key] = eval(value, dict(vars(rl_zoo3.utils)))  # what rl-zoo's StoreDict does
        except Exception as error:
            raise ZooConfigError(
                f"{flag} {item}: the value {value!r} is not a Python expression ({type(error).__name__}: {error}). "
                f"rl-zoo evaluates these values, so quote strings: {key}:\"'{value}'\""
            ) from None
    return values
