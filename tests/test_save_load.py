"""β and the objective are training state: they survive save -> load -> continue training."""

import json
import os
import zipfile

import pytest
import torch as th

from sb3_ppo_variants import AdaptiveKLPenalty, ClippedSurrogate, PPOVariant

KWARGS = dict(n_steps=64, batch_size=32, n_epochs=4, seed=0)


def test_adaptive_beta_survives_save_load_and_resumes(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", kl_target=0.001, **KWARGS)
    model.learn(5 * 64)
    beta = model.kl_coef
    assert beta != 1.0  # it adapted
    model.save(tmp_path / "model")
    assert (tmp_path / "model.zip").is_file()

    loaded = PPOVariant.load(tmp_path / "model", env=model.get_env())
    assert isinstance(loaded.objective, AdaptiveKLPenalty)
    assert loaded.kl_coef == beta
    assert loaded.objective.kl_target(1.0) == 0.001
    assert loaded.objective.kl_coef_bounds == model.objective.kl_coef_bounds

    # Continuing training starts from the saved β, not from 1.
    seen = []
    original_loss = loaded.objective.loss
    loaded.objective.loss = lambda batch: seen.append(loaded.objective.kl_coef) or original_loss(batch)
    loaded.learn(64, reset_num_timesteps=False)
    assert seen[0] == beta


@pytest.mark.parametrize("objective", ["clip", "fixed_kl", "none"])
def test_objective_survives_save_load(tmp_path, objective):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective=objective, kl_coef=3.0, clip_range=0.1, **KWARGS)
    model.learn(64)
    model.save(tmp_path / "model.zip")
    loaded = PPOVariant.load(tmp_path / "model.zip")
    assert type(loaded.objective) is type(model.objective)
    assert loaded.objective.name == objective
    assert loaded.kl_coef == model.kl_coef
    if objective == "clip":
        assert isinstance(loaded.objective, ClippedSurrogate) and loaded.objective.clip_range(1.0) == 0.1
    for saved, restored in zip(model.policy.parameters(), loaded.policy.parameters(), strict=True):
        assert th.equal(saved, restored)


def test_save_is_atomic(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", **KWARGS)
    path = tmp_path / "model.zip"
    model.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while saving")

    model.get_parameters = crash  # the crash happens in the middle of SB3's save
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before  # the previous model is intact
    assert os.listdir(tmp_path) == ["model.zip"]  # and no temporary file is left behind
    assert zipfile.ZipFile(path).testzip() is None


def test_save_to_file_object(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="fixed_kl", kl_coef=0.3, **KWARGS)
    with open(tmp_path / "model.zip", "wb") as file:
        model.save(file)
    assert PPOVariant.load(tmp_path / "model.zip").kl_coef == 0.3


def test_load_with_same_objective_name_keeps_saved_beta(tmp_path):
    """rl-zoo passes the YAML hyperparameters to load() when it continues training: β must survive that."""
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", kl_target=0.001, **KWARGS)
    model.learn(4 * 64)
    model.save(tmp_path / "model")
    with pytest.warns(UserWarning, match="Kept the saved objective"):
        loaded = PPOVariant.load(tmp_path / "model", objective="adaptive_kl", kl_coef=1.0, kl_target=0.001, n_epochs=2)
    assert loaded.kl_coef == model.kl_coef != 1.0
    assert loaded.n_epochs == 2  # other hyperparameters are applied as in SB3


def test_load_with_other_objective_replaces_it(tmp_path):
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", **KWARGS)
    model.learn(2 * 64)
    model.save(tmp_path / "model")
    loaded = PPOVariant.load(tmp_path / "model", objective="fixed_kl", kl_coef=0.3)
    assert loaded.objective.name == "fixed_kl" and loaded.kl_coef == 0.3
    with pytest.raises(ValueError, match="objective"):
        PPOVariant.load(tmp_path / "model", objective="bogus")


def test_model_saved_before_log_kl_existed_loads_and_trains(tmp_path):
    """A model saved by an earlier version (no log_kl in its data) loads with the default and keeps training."""
    model = PPOVariant("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, objective="adaptive_kl", seed=0)
    path = tmp_path / "old.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(files["data"])
    del data["log_kl"]
    files["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    loaded = PPOVariant.load(path, env=model.get_env())
    assert loaded.log_kl is False
    loaded.learn(128)
    assert loaded.logger.name_to_value["train/kl"] > 0
