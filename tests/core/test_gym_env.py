import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from biowm.core.errors import InvalidInputError
from biowm.domains.glucose.env import make_env


def test_single_env_passes_gymnasium_env_checker():
    env = make_env()
    check_env(env, skip_render_check=True)


def test_same_seed_same_episode_different_seed_different():
    def rollout(seed: int) -> np.ndarray:
        env = make_env()
        obs, _ = env.reset(seed=seed)
        seen = [obs]
        for _ in range(30):
            obs, *_ = env.step(np.array([0.02], dtype=np.float32))
            seen.append(obs)
        return np.concatenate(seen)

    assert np.array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_vector_env_steps_all_subjects_and_autoresets():
    env = make_env(num_envs=8, episode_days=1)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (8, 1) and obs.dtype == np.float32
    assert env.single_action_space.shape == (1,)
    # An overdose ends episodes early (severe hypoglycaemia) and those subjects restart.
    action = np.full((8, 1), 20.0, dtype=np.float32)
    ended = np.zeros(8, dtype=bool)
    for _ in range(60):
        obs, reward, terminated, truncated, info = env.step(action)
        assert reward.shape == (8,) and np.all(reward <= 0)
        if terminated.any():
            assert np.all(np.isfinite(info["final_obs"][terminated]))
            ended |= terminated
    assert ended.all()
    assert np.all(np.isfinite(obs))


def test_out_of_range_action_is_refused_not_clipped():
    env = make_env(num_envs=2)
    env.reset(seed=0)
    with pytest.raises(InvalidInputError, match="insulin_u_per_min"):
        env.step(np.array([[0.01], [-1.0]], dtype=np.float32))
