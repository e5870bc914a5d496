"""
Small environments for tests and benchmarks.

:class:`CueCorridorEnv` needs both memory and action masks: a T-maze whose goal side is shown only at the first step,
with only some moves legal in each cell. Registered as ``sb3_ppo_variants/CueCorridor-v0`` when this module is imported.
"""

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CueCorridorEnv(gym.Env[np.ndarray, np.int64]):
    """
    A corridor of ``length`` cells ending in a junction (a T-maze). The agent starts in cell 0; the goal is up or
    down at the junction, drawn at random each episode and shown **only in the first observation** (so the agent must
    remember it), and only some moves are legal in each cell (so masks matter):

    - in the corridor, ``RIGHT`` (towards the junction) is legal and ``LEFT`` is legal except in cell 0;
      ``UP`` and ``DOWN`` hit a wall;
    - at the junction only ``UP`` and ``DOWN`` are legal; taking one ends the episode, with reward +1 for the goal
      side (``info["is_success"] = True``) and -1 for the other.

    An illegal move leaves the agent in place with reward ``-illegal_penalty`` and ``info["illegal_action"] = True``.
    Episodes are truncated after ``max_steps`` steps (default ``4 * length``). Without memory the best success rate is
    50 %; with masks, an agent never wastes a step on a wall.

    Observation: one-hot of the cell (``length`` values), then the cue: +1 (goal up) or -1 (goal down) at the first
    step, 0 afterwards. Actions: ``Discrete(4)``, ``LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3``. Masks: :meth:`action_masks`.

    :param length: number of cells, junction included (>= 2)
    :param illegal_penalty: reward cost of an illegal move (>= 0)
    :param max_steps: time limit of an episode (``None``: ``4 * length``)
    """

    LEFT, RIGHT, UP, DOWN = 0, 1, 2, 3
    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium declares it an instance variable)

    def __init__(self, length: int = 6, illegal_penalty: float = 0.1, max_steps: int | None = None) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        if illegal_penalty < 0:
            raise ValueError(f"illegal_penalty must be >= 0, got {illegal_penalty}")
        self.length = length
        self.illegal_penalty = illegal_penalty
        self.max_steps = 4 * length if max_steps is None else max_steps
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(length + 1,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self.position = 0
        self.goal = self.UP
        self.steps = 0

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.length + 1, dtype=np.float32)
        observation[self.position] = 1.0
        if self.steps == 0:
            observation[-1] = 1.0 if self.goal == self.UP else -1.0
        return observation

    def action_masks(self) -> np.ndarray:
        """Legal moves in the current cell, a bool array of shape (4,)."""
        masks = np.zeros(4, dtype=bool)
        if self.position == self.length - 1:
            masks[[self.UP, self.DOWN]] = True
        else:
            masks[self.RIGHT] = True
            masks[self.LEFT] = self.position > 0
        return masks

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.goal = self.UP if self.np_random.random() < 0.5 else self.DOWN
        self.position = 0
        self.steps = 0
        return self._observation(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = int(action)
        legal = bool(self.action_masks()[action])
        self.steps += 1
        reward, terminated, info = 0.0, False, {"illegal_action": not legal}
        if not legal:
            reward = -self.illegal_penalty
        elif action in (self.UP, self.DOWN):
            terminated = True
            info["is_success"] = action == self.goal
            reward = 1.0 if info["is_success"] else -1.0
        else:
            self.position += 1 if action == self.RIGHT else -1
        truncated = not terminated and self.steps >= self.max_steps
        if truncated:
            info["is_success"] = False
        return self._observation(), reward, terminated, truncated, info


if "sb3_ppo_variants/CueCorridor-v0" not in gym.registry:
    gym.register(id="sb3_ppo_variants/CueCorridor-v0", entry_point="sb3_ppo_variants.envs:CueCorridorEnv")
