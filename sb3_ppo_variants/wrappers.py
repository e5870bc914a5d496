"""
Action masks from ``info["action_mask"]``: Gymnasium envs such as ``Taxi-v4`` report the legal actions in the info dict
of ``reset()`` and ``step()``. :class:`InfoActionMasker` exposes them as the ``action_masks()`` method that sb3-contrib's
maskable algorithms read, so no mask function has to be written. rl-zoo YAML can name it::

    Taxi-v4:
      env_wrapper: sb3_ppo_variants.wrappers.InfoActionMasker
"""

from typing import Any

import gymnasium as gym
import numpy as np
from sb3_contrib.common.wrappers import ActionMasker


class InfoActionMasker(ActionMasker):
    """
    sb3-contrib's ``ActionMasker`` whose masks are the env's latest ``info[key]`` (from ``reset()`` or ``step()``).

    :param env: the environment; it must put the mask in the info dict of every ``reset()`` and ``step()``
    :param key: the info key holding the mask (a boolean or 0/1 array of the action space's mask shape)
    """

    def __init__(self, env: gym.Env, key: str = "action_mask") -> None:
        super().__init__(env, lambda _: self._last_mask())
        self.key = key
        self._mask: np.ndarray | None = None

    def _remember(self, info: dict[str, Any]) -> None:
        if self.key not in info:
            raise KeyError(
                f"InfoActionMasker: the environment's info has no {self.key!r} entry (keys: {sorted(info)}); "
                "it must report the action mask at every reset() and step()"
            )
        self._mask = np.asarray(info[self.key], dtype=bool)

    def _last_mask(self) -> np.ndarray:
        if self._mask is None:
            raise RuntimeError("InfoActionMasker: action_masks() called before reset()")
        return self._mask

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        self._remember(info)
        return observation, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._remember(info)
        return observation, reward, terminated, truncated, info
