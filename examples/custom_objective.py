"""A user-defined objective: clipping *and* a KL penalty, which the paper (§4) mentions as an option.

    python examples/custom_objective.py

An objective gets each minibatch's ratios, advantages and (if it sets requires_kl) the exact
KL[π_old(·|s) ‖ π_θ(·|s)], and returns the loss to minimise plus named diagnostics (logged as train/<name>).
"""

import torch as th

from sb3_ppo_variants import ObjectiveOutput, PolicyBatch, PPOVariant, SurrogateObjective


class ClipWithKLPenalty(SurrogateObjective):
    requires_kl = True  # ask PPOVariant for the exact KL of each minibatch

    def __init__(self, clip_range: float = 0.2, kl_coef: float = 0.5):
        self.clip_range = clip_range
        self.kl_coef = kl_coef

    def loss(self, batch: PolicyBatch) -> ObjectiveOutput:
        ratio, advantages = batch.ratio, batch.advantages
        clipped = th.clamp(ratio, 1 - self.clip_range, 1 + self.clip_range)
        surrogate = batch.mean(th.min(ratio * advantages, clipped * advantages))
        penalty = self.kl_coef * batch.mean(batch.kl)
        return ObjectiveOutput(-surrogate + penalty, {"kl_penalty": penalty.detach()})


model = PPOVariant("MlpPolicy", "CartPole-v1", objective=ClipWithKLPenalty(), seed=0, verbose=1)
model.learn(3e4)
