"""ICU-Sepsis tables, batched simulator and Gymnasium env: exact values agree with Monte Carlo,
and the counter-based randomness makes episodes independent of batching."""

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from biowm.core.errors import InvalidInputError
from biowm.core.registry import get_domain
from biowm.domains.sepsis.benchmark import reference_values
from biowm.domains.sepsis.mdp import (
    ABSORBING,
    DEATH,
    N_ACTIONS,
    N_STATES,
    REFERENCE_VALUES,
    SURVIVAL,
    TERMINAL_STATES,
    load_tables,
    reward_on_entry,
    terminal_mask,
    uniform_policy,
)
from biowm.domains.sepsis.simulator import (
    SepsisEnv,
    SepsisSimulator,
    simulate_episodes,
    survival_rate,
)
from biowm.models.tabular_mdp import policy_value
from biowm.plan.tabular import optimal_policy


@pytest.fixture(scope="module")
def tables():
    return load_tables()


@pytest.fixture(scope="module")
def optimal(tables):
    return optimal_policy(tables.mdp()).policy


def test_tables_are_a_proper_read_only_mdp(tables):
    assert tables.transitions.shape == (N_STATES, N_ACTIONS, N_STATES)
    np.testing.assert_allclose(tables.transitions.sum(axis=2), 1.0, atol=1e-6)
    np.testing.assert_allclose(tables.initial.sum(), 1.0, atol=1e-6)
    assert tables.initial[list(TERMINAL_STATES)].sum() == 0.0
    np.testing.assert_allclose(tables.clinician_policy.sum(axis=1), 1.0, atol=1e-6)
    assert tables.state_features.shape[0] == N_STATES
    assert not tables.transitions.flags.writeable
    assert reward_on_entry().sum() == 1.0 and reward_on_entry()[SURVIVAL] == 1.0
    assert list(np.flatnonzero(terminal_mask())) == [DEATH, SURVIVAL, ABSORBING]
    assert get_domain("sepsis").name == "sepsis"


def test_exact_reference_values_match_the_published_ones():
    values = reference_values()
    for name, published in REFERENCE_VALUES.items():
        assert round(values[name], 4) == published, name


@pytest.mark.parametrize(("name", "seed"), [("clinician", 0), ("random", 1)])
def test_exact_value_agrees_with_monte_carlo(tables, name, seed):
    policy = tables.clinician_policy if name == "clinician" else uniform_policy()
    exact = policy_value(tables.mdp(), policy)
    assert round(exact, 4) == REFERENCE_VALUES[name]
    n = 20_000
    observed = survival_rate(simulate_episodes(policy, n, seed))
    standard_error = np.sqrt(exact * (1 - exact) / n)
    assert abs(observed - exact) < 4 * standard_error, (observed, exact)


def test_simulated_logs_are_well_formed(tables):
    logs = simulate_episodes(tables.clinician_policy, 200, seed=4)
    logs.validate()
    assert len(logs) == 200 and logs.time_unit == "step"
    assert logs.subject_ids[:2] == ["episode-0", "episode-1"]
    terminal = terminal_mask()
    states = logs.obs[..., 0].numpy().astype(int)
    actions = logs.actions[..., 0].numpy()
    for i, length in enumerate(logs.lengths.tolist()):
        path = states[i, :length]
        np.testing.assert_array_equal(logs.times[i, :length].numpy(), np.arange(length))
        assert not terminal[path[:-1]].any()  # runs until its first terminal state
        assert terminal[path[-1]]
        assert path[-1] != ABSORBING
        assert actions[i, length - 1] == 0.0
        assert np.all(np.isin(actions[i, : length - 1], np.arange(N_ACTIONS)))
        # Every step is one the true tables allow.
        moves = tables.transitions[path[:-1], actions[i, : length - 1].astype(int), path[1:]]
        assert np.all(moves > 0)


def test_logged_actions_follow_the_policy(tables):
    # A deterministic policy is followed exactly.
    always = np.zeros((N_STATES, N_ACTIONS))
    always[:, 7] = 1.0
    logs = simulate_episodes(always, 50, seed=0)
    valid = torch.isfinite(logs.times)
    last = logs.lengths - 1
    actions = logs.actions[..., 0]
    for i in range(50):
        assert torch.all(actions[i, : last[i]] == 7)
        assert not valid[i, last[i] + 1:].any()


def test_same_seed_same_episodes_whatever_the_batch(tables):
    policy = tables.clinician_policy
    big = simulate_episodes(policy, 50, seed=3)
    part = simulate_episodes(policy, 10, seed=3, offset=20)
    assert part.subject_ids == big.subject_ids[20:30]
    for k in range(10):
        length = int(part.lengths[k])
        assert length == int(big.lengths[20 + k])
        assert torch.equal(part.obs[k, :length], big.obs[20 + k, :length])
        assert torch.equal(part.actions[k, :length], big.actions[20 + k, :length])
    again = simulate_episodes(policy, 50, seed=3)
    assert torch.equal(again.obs, big.obs) and torch.equal(again.actions, big.actions)
    other = simulate_episodes(policy, 50, seed=4)
    assert not (other.obs.shape == big.obs.shape and torch.equal(other.obs, big.obs))


def test_simulator_steps_each_patient_independently_of_the_batch():
    simulator = SepsisSimulator()
    state = simulator.reset(8, seed=5)
    assert state["state"].shape == (8,)
    single = simulator.reset(1, seed=5, offset=3)
    assert int(single["state"][0]) == int(state["state"][3])
    action = torch.arange(8, dtype=torch.float64)[:, None]
    following = simulator.step(state, action)
    alone = simulator.step(single, action[3:4])
    assert int(alone["state"][0]) == int(following["state"][3])
    assert torch.equal(following["step"], torch.ones(8, dtype=torch.long))
    obs = simulator.observe(following)
    assert obs.shape == (8, 1) and obs.dtype == torch.float64
    # Terminal patients stay where they are.
    done = {"state": torch.tensor([DEATH, SURVIVAL]), "key": state["key"][:2],
            "step": torch.zeros(2, dtype=torch.long)}
    after = simulator.step(done, torch.tensor([[3.0], [4.0]]))
    assert after["state"].tolist() == [DEATH, SURVIVAL]


def test_simulator_and_episodes_refuse_bad_input(tables):
    simulator = SepsisSimulator()
    state = simulator.reset(2, seed=0)
    with pytest.raises(InvalidInputError, match="dt=1"):
        simulator.step(state, torch.zeros(2, 1), dt=2.0)
    with pytest.raises(InvalidInputError):
        simulator.step(state, torch.full((2, 1), 25.0))
    with pytest.raises(InvalidInputError, match="n >= 1"):
        simulator.reset(0)
    with pytest.raises(InvalidInputError, match="at least one episode"):
        simulate_episodes(tables.clinician_policy, 0, seed=0)
    with pytest.raises(InvalidInputError, match="shape"):
        simulate_episodes(np.full((N_STATES, 5), 0.2), 3, seed=0)


# -- Gymnasium env ------------------------------------------------------------------------


def test_env_passes_the_gymnasium_checker():
    check_env(SepsisEnv(), skip_render_check=True)


def env_episode(env: SepsisEnv, policy: np.ndarray, seed: int | None = None):
    state, info = env.reset(seed=seed)
    states, rewards = [state], []
    assert set(info) == {"state_vector", "sofa_score"}
    while True:
        state, reward, terminated, truncated, info = env.step(int(policy[state].argmax()))
        states.append(state)
        rewards.append(reward)
        assert reward == (1.0 if state == SURVIVAL else 0.0)
        assert terminated == (state in (DEATH, SURVIVAL, ABSORBING))
        if terminated or truncated:
            return states, rewards


def test_env_is_reproducible_and_pays_only_on_survival(optimal):
    env = SepsisEnv()
    first = [env_episode(env, optimal, seed=11)] + [env_episode(env, optimal) for _ in range(4)]
    again = SepsisEnv()
    second = [env_episode(again, optimal, seed=11)] + [env_episode(again, optimal)
                                                      for _ in range(4)]
    assert first == second
    for states, rewards in first:
        assert sum(rewards) == (1.0 if states[-1] == SURVIVAL else 0.0)
    assert len({tuple(states) for states, _ in first}) > 1  # successive resets differ


def test_env_episodes_are_the_batched_simulators_episodes(optimal):
    # Under a deterministic policy, env episode k after reset(seed) is episode k of
    # simulate_episodes(seed): the same counter-based draws.
    env = SepsisEnv()
    logs = simulate_episodes(optimal, 30, seed=8)
    for k in range(30):
        states, _ = env_episode(env, optimal, seed=8 if k == 0 else None)
        length = int(logs.lengths[k])
        assert states == logs.obs[k, :length, 0].long().tolist()


def test_env_rollouts_estimate_the_optimal_value(optimal):
    env = SepsisEnv()
    n = 300
    survived = [env_episode(env, optimal, seed=21 if i == 0 else None)[1][-1] for i in range(n)]
    exact = REFERENCE_VALUES["optimal"]
    assert abs(np.mean(survived) - exact) < 4 * np.sqrt(exact * (1 - exact) / n)


def test_env_info_and_bad_actions(tables):
    env = SepsisEnv()
    with pytest.raises(InvalidInputError, match="reset"):
        env.step(0)
    state, info = env.reset(seed=0)
    np.testing.assert_array_equal(info["state_vector"], tables.state_features[state])
    assert info["sofa_score"] == float(tables.sofa[state])
    for bad in (25, -1):
        with pytest.raises(InvalidInputError, match="0..24"):
            env.step(bad)
