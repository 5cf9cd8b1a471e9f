import h5py
import numpy as np
import pytest

from go2_sevpo.data.format import REQUIRED_KEYS, DatasetError, OfflineDataset, load_dataset, write_dataset
from go2_sevpo.data.mix import MixRecipe, mix
from go2_sevpo.data.summary import safe_mask, summarize


def make_arrays(lengths=(3, 4, 2), obs_dim=8, act_dim=2, costs_per_traj=(0, 2, 0), seed=0):
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    costs = np.zeros(n, np.float32)
    start = 0
    for i, (length, c) in enumerate(zip(lengths, costs_per_traj)):
        (terminals if i % 2 == 0 else timeouts)[start + length - 1] = True
        costs[start:start + int(c)] = 1.0
        start += length
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    return {
        "observations": obs,
        "next_observations": obs + 0.1,
        "actions": rng.uniform(-1, 1, size=(n, act_dim)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "costs": costs,
        "terminals": terminals,
        "timeouts": timeouts,
    }


def test_round_trip_and_layout(tmp_path):
    arrays = make_arrays()
    path = tmp_path / "d.h5"
    write_dataset(path, arrays, extras={"source": np.ones(9, np.uint8)}, attrs={"env": "reach_avoid", "recipe": {"a": 1}})
    with h5py.File(path) as f:
        # DSRL's 7 keys plus only the optional extras group
        assert set(f.keys()) == set(REQUIRED_KEYS) | {"extras"}
        assert f["terminals"].dtype == np.uint8 and f["rewards"].shape == (9,)
    ds = load_dataset(path, obs_dim=8, act_dim=2)
    for k in REQUIRED_KEYS:
        np.testing.assert_array_equal(getattr(ds, k), arrays[k])
    assert ds.attrs["env"] == "reach_avoid" and ds.attrs["recipe"] == {"a": 1}
    assert ds.episode_bounds().tolist() == [[0, 3], [3, 7], [7, 9]]
    np.testing.assert_allclose(ds.episode_costs(), [0, 2, 0])
    assert safe_mask(ds, 0.0).tolist() == [True, False, True]
    assert "safe:unsafe   2:1" in summarize(ds)


def test_discounted_to_go_restarts_at_every_trajectory_end():
    arrays = make_arrays(lengths=(3, 4, 1, 2), costs_per_traj=(0, 2, 0, 1))
    ds = OfflineDataset(**{k: arrays[k] for k in REQUIRED_KEYS})
    r, gamma = arrays["rewards"].astype(np.float64), 0.9
    expected = []
    for start, end in ds.episode_bounds():  # naive double sum, one trajectory at a time
        expected += [sum(gamma ** (k - t) * r[k] for k in range(t, end)) for t in range(start, end)]
    np.testing.assert_allclose(ds.discounted_to_go(arrays["rewards"], gamma), expected, rtol=1e-12)
    # the last row of a trajectory is its own reward: nothing leaks in from the next trajectory
    ends = ds.episode_bounds()[:, 1] - 1
    np.testing.assert_allclose(ds.discounted_to_go(arrays["rewards"], gamma)[ends], r[ends])


def test_plain_dsrl_file_loads(tmp_path):
    """A file written with plain h5py in DSRL's exact layout: uint8 flags, (N, 1) rewards and costs."""
    a = make_arrays()
    path = tmp_path / "dsrl.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = a["observations"]
        f["next_observations"] = a["next_observations"]
        f["actions"] = a["actions"]
        f["rewards"] = a["rewards"][:, None]
        f["costs"] = a["costs"][:, None]
        f["terminals"] = a["terminals"].astype(np.uint8)
        f["timeouts"] = a["timeouts"].astype(np.uint8)
    ds = load_dataset(path)
    assert ds.rewards.shape == (9,) and ds.terminals.dtype == bool and ds.extras == {}
    np.testing.assert_array_equal(ds.costs, a["costs"])


def corrupt(tmp_path, name, mutate):
    a = make_arrays()
    mutate(a)
    path = tmp_path / f"{name}.h5"
    with h5py.File(path, "w") as f:
        for k, v in a.items():
            f[k] = v
    return path


@pytest.mark.parametrize(
    "name, mutate, message",
    [
        ("missing_key", lambda a: a.pop("costs"), "missing required key"),
        ("nan_obs", lambda a: a["observations"].__setitem__((4, 1), np.nan), "observations contains NaN"),
        ("big_action", lambda a: a["actions"].__setitem__((2, 0), 1.7), "actions outside"),
        ("no_end", lambda a: a["terminals"].__setitem__(-1, False), "no end flag"),
        ("bad_shape", lambda a: a.__setitem__("rewards", a["rewards"][:5]), "rewards must have shape"),
    ],
)
def test_invalid_files_are_one_line_errors(tmp_path, name, mutate, message):
    path = corrupt(tmp_path, name, mutate)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_missing_truncated_and_mismatched(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "nope.h5")
    path = tmp_path / "ok.h5"
    write_dataset(path, make_arrays())
    with pytest.raises(DatasetError, match="observation dim 8 does not match the env's 11"):
        load_dataset(path, obs_dim=11)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        load_dataset(truncated)


def test_mix_hits_the_stated_ratio_and_resamples_unsafe(tmp_path):
    safe_src, unsafe_src = tmp_path / "safe.h5", tmp_path / "unsafe.h5"
    write_dataset(safe_src, make_arrays(lengths=(3,) * 40, costs_per_traj=(0,) * 40))
    write_dataset(unsafe_src, make_arrays(lengths=(2,) * 6, costs_per_traj=(1,) * 3 + (0,) * 3))
    out = tmp_path / "mix.h5"
    mix(MixRecipe("t", ratio=4, num_safe=36, safe_sources=[str(safe_src)], unsafe_sources=[str(unsafe_src)]), str(out))
    ds = load_dataset(out)
    safe = safe_mask(ds, 0.0)
    assert (safe.sum(), (~safe).sum()) == (36, 9)  # 9 unsafe drawn from a pool of 3: with replacement
    assert ds.attrs["recipe"]["unsafe_with_replacement"] is True
    with pytest.raises(DatasetError, match="needs 50 safe trajectories"):
        mix(MixRecipe("t", ratio=4, num_safe=50, safe_sources=[str(safe_src)], unsafe_sources=[str(unsafe_src)]), str(out))
