"""Exact KL[π_old ‖ π_θ] for every SB3 action distribution, against independent float64 references."""

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    SquashedDiagGaussianDistribution,
    StateDependentNoiseDistribution,
)
from torch.distributions import Bernoulli, Categorical, Normal, kl_divergence

from sb3_ppo_variants import PPOVariant, closed_form_kl, sampled_kl

BATCH = 6


def generator() -> th.Generator:
    return th.Generator().manual_seed(0)


def random(*shape, scale=1.0, gen) -> th.Tensor:
    return th.randn(*shape, generator=gen) * scale


def our_kl(old_dist, new_dist) -> th.Tensor:
    family = closed_form_kl(old_dist)
    assert family is not None
    return family.kl(family.parameters(old_dist.distribution), family.parameters(new_dist.distribution))


def two(distribution_class, *args, **kwargs):
    return distribution_class(*args, **kwargs), distribution_class(*args, **kwargs)


def test_categorical():
    gen = generator()
    old_logits, new_logits = random(BATCH, 5, gen=gen), random(BATCH, 5, gen=gen)
    old, new = two(CategoricalDistribution, 5)
    old.proba_distribution(old_logits)
    new.proba_distribution(new_logits)
    expected = kl_divergence(Categorical(logits=old_logits.double()), Categorical(logits=new_logits.double()))
    assert th.allclose(our_kl(old, new).double(), expected, atol=1e-6)


def test_multi_categorical_sums_components():
    gen = generator()
    dims = [3, 4, 2]
    old_logits, new_logits = random(BATCH, sum(dims), gen=gen), random(BATCH, sum(dims), gen=gen)
    old, new = two(MultiCategoricalDistribution, dims)
    old.proba_distribution(old_logits)
    new.proba_distribution(new_logits)
    expected = sum(
        kl_divergence(Categorical(logits=o.double()), Categorical(logits=n.double()))
        for o, n in zip(old_logits.split(dims, dim=1), new_logits.split(dims, dim=1), strict=True)
    )
    assert th.allclose(our_kl(old, new).double(), expected, atol=1e-6)


def test_bernoulli_sums_dimensions():
    gen = generator()
    old_logits, new_logits = random(BATCH, 4, scale=2, gen=gen), random(BATCH, 4, scale=2, gen=gen)
    old, new = two(BernoulliDistribution, 4)
    old.proba_distribution(old_logits)
    new.proba_distribution(new_logits)
    expected = kl_divergence(Bernoulli(logits=old_logits.double()), Bernoulli(logits=new_logits.double())).sum(dim=1)
    assert th.allclose(our_kl(old, new).double(), expected, atol=1e-6)


@pytest.mark.parametrize("distribution_class", [DiagGaussianDistribution, SquashedDiagGaussianDistribution])
def test_diag_gaussian_sums_dimensions(distribution_class):
    gen = generator()
    old_mean, new_mean = random(BATCH, 3, gen=gen), random(BATCH, 3, gen=gen)
    old_log_std, new_log_std = random(3, scale=0.5, gen=gen), random(3, scale=0.5, gen=gen)
    old, new = two(distribution_class, 3)
    old.proba_distribution(old_mean, old_log_std)
    new.proba_distribution(new_mean, new_log_std)
    expected = kl_divergence(
        Normal(old_mean.double(), old_log_std.double().exp()), Normal(new_mean.double(), new_log_std.double().exp())
    ).sum(dim=1)
    assert th.allclose(our_kl(old, new).double(), expected, atol=1e-5)


@pytest.mark.parametrize("squash_output", [False, True])
def test_gsde_uses_state_dependent_std(squash_output):
    gen = generator()
    latent_dim, action_dim = 4, 2
    old_mean, new_mean = random(BATCH, action_dim, gen=gen), random(BATCH, action_dim, gen=gen)
    old_latent, new_latent = random(BATCH, latent_dim, gen=gen), random(BATCH, latent_dim, gen=gen)
    old_log_std, new_log_std = random(latent_dim, action_dim, scale=0.3, gen=gen), random(latent_dim, action_dim, gen=gen)
    old, new = two(StateDependentNoiseDistribution, action_dim, squash_output=squash_output)
    old.proba_distribution(old_mean, old_log_std, old_latent)
    new.proba_distribution(new_mean, new_log_std, new_latent)

    def reference(mean, log_std, latent):
        # gSDE (Raffin et al. 2021): a ~ N(μ(s), σ²(s)) with σ²(s)_j = Σ_i latent_i² exp(log_std_ij)²
        variance = (latent.double() ** 2) @ (log_std.double().exp() ** 2) + old.epsilon
        return Normal(mean.double(), variance.sqrt())

    expected = kl_divergence(reference(old_mean, old_log_std, old_latent), reference(new_mean, new_log_std, new_latent))
    assert th.allclose(our_kl(old, new).double(), expected.sum(dim=1), rtol=1e-4, atol=1e-5)


def test_direction_is_old_first():
    old_logits = th.tensor([[3.0, 0.0, -3.0]])
    new_logits = th.tensor([[0.0, 0.0, 0.0]])
    old, new = two(CategoricalDistribution, 3)
    old.proba_distribution(old_logits)
    new.proba_distribution(new_logits)
    forward = kl_divergence(Categorical(logits=old_logits), Categorical(logits=new_logits))
    reverse = kl_divergence(Categorical(logits=new_logits), Categorical(logits=old_logits))
    assert not th.allclose(forward, reverse, atol=1e-3)
    assert th.allclose(our_kl(old, new), forward, atol=1e-6)


def test_identical_distributions_give_exactly_zero():
    gen = generator()
    logits = random(BATCH, 5, gen=gen)
    old, new = two(CategoricalDistribution, 5)
    old.proba_distribution(logits)
    new.proba_distribution(logits.clone())
    assert th.equal(our_kl(old, new), th.zeros(BATCH))
    mean, log_std = random(BATCH, 3, gen=gen), random(3, gen=gen)
    old, new = two(DiagGaussianDistribution, 3)
    old.proba_distribution(mean, log_std)
    new.proba_distribution(mean.clone(), log_std.clone())
    assert th.equal(our_kl(old, new), th.zeros(BATCH))


def test_near_zero_probabilities_stay_finite():
    # Probabilities down to exp(-250): they underflow to 0 in float32.
    old_logits = th.tensor([[0.0, -200.0, 50.0], [0.0, 0.0, -250.0]])
    new_logits = th.tensor([[0.0, 10.0, -200.0], [-250.0, 0.0, 0.0]])
    old, new = two(CategoricalDistribution, 3)
    old.proba_distribution(old_logits)
    new.proba_distribution(new_logits)
    ours = our_kl(old, new)
    assert th.isfinite(ours).all()
    expected = kl_divergence(Categorical(logits=old_logits.double()), Categorical(logits=new_logits.double()))
    assert th.allclose(ours.double(), expected, rtol=1e-5)
    # torch's float32 formula is not finite here: the pitfall we avoid
    assert not th.isfinite(kl_divergence(Categorical(logits=old_logits), Categorical(logits=new_logits))).all()

    old_b, new_b = two(BernoulliDistribution, 2)
    old_b.proba_distribution(th.tensor([[100.0, -100.0]]))
    new_b.proba_distribution(th.tensor([[-100.0, 30.0]]))
    ours = our_kl(old_b, new_b)
    expected = kl_divergence(
        Bernoulli(logits=th.tensor([[100.0, -100.0]]).double()), Bernoulli(logits=th.tensor([[-100.0, 30.0]]).double())
    )
    assert th.isfinite(ours).all()
    assert th.allclose(ours.double(), expected.sum(dim=1), rtol=1e-5)


def test_squashing_does_not_change_kl():
    """KL of tanh-squashed Gaussians = KL of the underlying Gaussians (Monte Carlo check with SB3's log_prob)."""
    th.manual_seed(0)
    old, new = two(SquashedDiagGaussianDistribution, 1)
    old.proba_distribution(th.tensor([[0.3]]), th.tensor([-0.5]))
    new.proba_distribution(th.tensor([[-0.2]]), th.tensor([-0.2]))
    samples = old.distribution.sample((200_000,)).squeeze(1)  # Gaussian samples of π_old
    squashed = th.tanh(samples).clamp(-0.999999, 0.999999)
    monte_carlo = (old.log_prob(squashed, samples) - new.log_prob(squashed)).mean()
    assert monte_carlo.item() == pytest.approx(our_kl(old, new).item(), abs=0.01)


def test_sampled_kl_is_k3():
    old_log_prob = th.tensor([-1.0, -2.0, -0.5])
    new_log_prob = th.tensor([-1.5, -1.0, -0.5])
    ratio = (new_log_prob - old_log_prob).exp()
    assert th.allclose(sampled_kl(old_log_prob, new_log_prob), (ratio - 1) - ratio.log())


def test_unknown_distribution_falls_back_to_sample_estimate_with_warning():
    class Opaque(CategoricalDistribution):
        """A distribution without a registered closed form."""

        def proba_distribution(self, action_logits):
            super().proba_distribution(action_logits)
            self.distribution = OpaqueTorch(self.distribution)
            return self

    class OpaqueTorch:
        def __init__(self, wrapped):
            self.wrapped = wrapped

        def __getattr__(self, name):
            return getattr(self.wrapped, name)

    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="fixed_kl", n_steps=64, batch_size=32, n_epochs=2, seed=0)
    model.policy.action_dist.__class__ = Opaque
    model.policy.action_dist.distribution = None
    assert closed_form_kl(Opaque(2).proba_distribution(th.zeros(1, 2))) is None
    with pytest.warns(UserWarning, match="sample estimate"):
        model.learn(128)
    assert model.logger.name_to_value["train/kl_is_estimate"] == 1.0
    assert np.isfinite(model.logger.name_to_value["train/kl"])


def as_float64(distribution):
    if isinstance(distribution, Normal):
        return Normal(distribution.loc.double(), distribution.scale.double())
    return Categorical(logits=distribution.logits.double())


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("CartPole-v1", {}),
        ("Pendulum-v1", {}),
        ("Pendulum-v1", {"use_sde": True}),
        ("Pendulum-v1", {"use_sde": True, "policy_kwargs": {"squash_output": True}}),
    ],
)
def test_logged_kl_is_exact_mean_kl_of_the_update(env_id, kwargs):
    """train/kl = mean exact KL between the policy before and after the update, over the rollout."""
    settings = dict(n_steps=64, batch_size=32, n_epochs=3, seed=0, learning_rate=3e-3, log_kl=True, **kwargs)
    trained = PPOVariant("MlpPolicy", env_id, **settings).learn(64)  # one rollout and one update
    untrained = PPOVariant("MlpPolicy", env_id, **settings)  # same seed: the policy that collected the rollout
    observations = th.as_tensor(trained.rollout_buffer.observations).reshape(64, -1)
    with th.no_grad():
        before = as_float64(untrained.policy.get_distribution(observations).distribution)
        after = as_float64(trained.policy.get_distribution(observations).distribution)
    expected = kl_divergence(before, after)
    expected = expected.sum(dim=-1) if expected.dim() > 1 else expected
    assert trained.logger.name_to_value["train/kl"] == pytest.approx(expected.mean().item(), rel=1e-4, abs=1e-7)
    assert trained.logger.name_to_value["train/kl"] > 0
