"""toolkit.nets: encoders from gymnasium spaces, preprocessing, LSTM core, summary, SB3."""

from __future__ import annotations

import importlib
import io
import random
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from gymnasium import spaces
from rich.console import Console
from torch import nn

from toolkit.nets import (
    MLP,
    NatureCNN,
    ObservationEncoder,
    Preprocessor,
    RecurrentEncoder,
    SmallCNN,
    image_layout,
    make_encoder,
    summary,
    summary_table,
)


@pytest.fixture(autouse=True)
def _seeded_torch() -> Iterator[None]:
    """Seed torch's RNG for each test and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def bool_box(shape: tuple[int, int, int]) -> spaces.Box:
    """A MinAtar-like space of 0/1 cells."""
    return spaces.Box(0, 1, shape, np.bool_)  # type: ignore[arg-type]  # stubs omit bool


def batch(space: spaces.Space, size: int = 3) -> torch.Tensor:
    space.seed(0)
    return torch.as_tensor(np.stack([space.sample() for _ in range(size)]))


def feedforward(encoder: nn.Module) -> ObservationEncoder:
    assert isinstance(encoder, ObservationEncoder)
    return encoder


# -- preprocessing and encoders for each kind of space --------------------------------------


def test_discrete_auto_is_the_exact_one_hot() -> None:
    encoder = feedforward(make_encoder(spaces.Discrete(16)))
    assert encoder.output_dim == 16
    assert not list(encoder.parameters())
    out = encoder(torch.tensor([0, 5, 15]))
    assert torch.equal(out, torch.eye(16)[[0, 5, 15]])
    assert out.dtype == torch.float32


def test_discrete_start_and_multidiscrete_one_hots() -> None:
    shifted = make_encoder(spaces.Discrete(3, start=2), "flat")
    assert torch.equal(shifted(torch.tensor([2, 4])), torch.tensor([[1., 0, 0], [0, 0, 1]]))
    multi = make_encoder(spaces.MultiDiscrete([2, 3]), "flat")
    assert multi.output_dim == 5
    assert torch.equal(multi(torch.tensor([[1, 0], [0, 2]])),
                       torch.tensor([[0., 1, 1, 0, 0], [1, 0, 0, 0, 1]]))


def test_discrete_mlp_sits_on_the_one_hot() -> None:
    encoder = feedforward(make_encoder(spaces.Discrete(16), "mlp", hidden=(8,)))
    assert encoder.output_dim == 8
    assert encoder(torch.tensor([3, 4])).shape == (2, 8)
    assert isinstance(encoder.core, MLP)
    first = encoder.core.layers[0]
    assert isinstance(first, nn.Linear) and first.in_features == 16


@pytest.mark.parametrize(("space", "core", "dim"), [
    (spaces.Box(-1, 1, (4,)), MLP, 64),
    (spaces.MultiBinary(5), MLP, 64),
    (spaces.MultiBinary([2, 3]), MLP, 64),
    (spaces.Box(0, 255, (84, 84, 4), np.uint8), NatureCNN, 512),
    (spaces.Box(0, 255, (4, 84, 84), np.uint8), NatureCNN, 512),
    (bool_box((10, 10, 4)), SmallCNN, 128),
    (spaces.Box(0, 1, (10, 10, 7), np.float32), SmallCNN, 128),
], ids=["box4", "multibinary5", "multibinary2x3", "atari-hwc", "atari-chw", "minatar-bool",
        "minatar-float7"])
def test_auto_encoder_output_shapes(space: spaces.Space, core: type, dim: int) -> None:
    encoder = feedforward(make_encoder(space))
    assert isinstance(encoder.core, core)
    assert encoder.output_dim == dim
    out = encoder(batch(space))
    assert out.shape == (3, dim)
    assert out.dtype == torch.float32


def test_flat_sizes_and_image_channels() -> None:
    assert make_encoder(spaces.MultiBinary([2, 3]), "flat").output_dim == 6
    assert Preprocessor(spaces.Box(0, 1, (10, 10, 7))).output_shape == (7, 10, 10)
    assert Preprocessor(spaces.Box(0, 255, (4, 84, 84), np.uint8)).output_shape == (4, 84, 84)
    minatar = feedforward(make_encoder(bool_box((10, 10, 7))))
    assert isinstance(minatar.core, SmallCNN)
    assert minatar.core.convs[0].in_channels == 7


@pytest.mark.parametrize(("shape", "layout"), [
    ((84, 84, 4), "hwc"), ((64, 64, 3), "hwc"), ((10, 10, 4), "hwc"), ((10, 10, 7), "hwc"),
    ((4, 84, 84), "chw"), ((3, 64, 64), "chw"), ((10, 10, 10), "chw"),
])
def test_image_layout_rule(shape: tuple[int, int, int], layout: str) -> None:
    assert image_layout(shape) == layout


def test_layout_override() -> None:
    assert image_layout((10, 10, 10), "hwc") == "hwc"
    assert Preprocessor(spaces.Box(0, 1, (10, 10, 10)), layout="hwc").channels_last
    with pytest.raises(ValueError, match="valid: 'auto', 'hwc', 'chw'"):
        image_layout((4, 84, 84), "nchw")  # type: ignore[arg-type]


def test_hwc_and_chw_images_give_the_same_features() -> None:
    hwc = make_encoder(spaces.Box(0, 255, (84, 84, 4), np.uint8))
    chw = make_encoder(spaces.Box(0, 255, (4, 84, 84), np.uint8))
    chw.load_state_dict(hwc.state_dict())
    frames = batch(spaces.Box(0, 255, (4, 84, 84), np.uint8), 2)
    torch.testing.assert_close(hwc(frames.permute(0, 2, 3, 1)), chw(frames))


def test_uint8_images_are_scaled_by_1_over_255() -> None:
    as_uint8 = make_encoder(spaces.Box(0, 255, (84, 84, 4), np.uint8))
    as_float = make_encoder(spaces.Box(0, 1, (84, 84, 4), np.float32))
    as_float.load_state_dict(as_uint8.state_dict())
    white = as_uint8(torch.full((2, 84, 84, 4), 255, dtype=torch.uint8))
    assert torch.equal(white, as_float(torch.ones(2, 84, 84, 4)))
    assert not torch.equal(white, as_float(torch.full((2, 84, 84, 4), 255.0)))


def test_bool_images_and_uint8_vectors_are_cast_not_scaled() -> None:
    image = Preprocessor(bool_box((10, 10, 4)))
    frames = torch.zeros(2, 10, 10, 4, dtype=torch.bool)
    frames[1, 3, 5, 2] = True
    out = image(frames)
    assert out.dtype == torch.float32 and out.shape == (2, 4, 10, 10)
    assert out.sum() == 1 and out[1, 2, 3, 5] == 1.0
    ram = Preprocessor(spaces.Box(0, 255, (3,), np.uint8))
    assert torch.equal(ram(torch.tensor([[0, 128, 255]], dtype=torch.uint8)),
                       torch.tensor([[0.0, 128.0, 255.0]]))


@pytest.mark.parametrize("space", [
    spaces.Dict({"pos": spaces.Box(-1, 1, (2,))}),
    spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3))),
    spaces.Text(8),
], ids=["dict", "tuple", "text"])
def test_unsupported_spaces_raise_a_one_line_error(space: spaces.Space) -> None:
    with pytest.raises(ValueError, match="cannot take observations of") as info:
        make_encoder(space)
    message = str(info.value)
    assert "\n" not in message
    assert type(space).__name__ in message and "FlattenObservation" in message


def test_unknown_kind_lists_the_valid_kinds() -> None:
    with pytest.raises(ValueError, match="valid kinds: auto, flat, mlp, cnn, lstm"):
        make_encoder(spaces.Box(-1, 1, (4,)), "transformer")


def test_kind_errors() -> None:
    with pytest.raises(ValueError, match="needs an image"):
        make_encoder(spaces.Box(-1, 1, (4,)), "cnn")
    with pytest.raises(ValueError, match="only apply to kind='lstm'"):
        make_encoder(spaces.Box(-1, 1, (4,)), "mlp", hidden_size=8)
    with pytest.raises(ValueError, match="cannot take images"):
        make_encoder(spaces.Box(0, 1, (2, 2, 1)), "cnn")


def test_cnn_kind_picks_by_spatial_size() -> None:
    small = feedforward(make_encoder(spaces.Box(0, 255, (35, 35, 3), np.uint8), "cnn"))
    large = feedforward(make_encoder(spaces.Box(0, 255, (36, 36, 3), np.uint8), "cnn",
                                     out_dim=32))
    assert isinstance(small.core, SmallCNN) and isinstance(large.core, NatureCNN)
    assert large.output_dim == 32 and large(batch(large.observation_space, 2)).shape == (2, 32)


def test_nature_cnn_layers_match_the_paper() -> None:
    cnn = NatureCNN((4, 84, 84))
    convs = [m for m in cnn.convs if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)), (64, (3, 3), (1, 1))]
    assert cnn.flat_dim == 64 * 7 * 7 and cnn.linear.out_features == 512
    small = SmallCNN((4, 10, 10))
    assert small.flat_dim == 16 * 8 * 8 and small.output_dim == 128


# -- MLP --------------------------------------------------------------------------------------


def test_mlp_output_dim_and_layers() -> None:
    assert MLP(4).output_dim == 64
    assert isinstance(MLP(4).layers[-1], nn.Tanh)
    identity = MLP(4, hidden=())
    assert identity.output_dim == 4 and torch.equal(identity(torch.ones(2, 4)), torch.ones(2, 4))
    head = MLP(4, (8,), nn.ReLU, out_dim=3)
    assert head.output_dim == 3 and isinstance(head.layers[1], nn.ReLU)
    assert isinstance(head.layers[-1], nn.Linear) and head(torch.zeros(5, 4)).shape == (5, 3)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP(4, activation="swish")


def test_mlp_orthogonal_init() -> None:
    mlp = MLP(4, (64,), out_dim=2, ortho_init=True, out_gain=0.01)
    hidden, out = mlp.layers[0], mlp.layers[2]
    assert isinstance(hidden, nn.Linear) and isinstance(out, nn.Linear)
    torch.testing.assert_close(hidden.weight.T @ hidden.weight, 2.0 * torch.eye(4))
    torch.testing.assert_close(out.weight @ out.weight.T, 1e-4 * torch.eye(2))
    assert not hidden.bias.any() and not out.bias.any()


# -- LSTM -------------------------------------------------------------------------------------


def random_state(rnn: RecurrentEncoder, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    h, c = rnn.initial_state(size)
    return torch.randn_like(h), torch.randn_like(c)


def recurrent(space: spaces.Space, **kwargs: object) -> RecurrentEncoder:
    rnn = make_encoder(space, "lstm", hidden_size=8, **kwargs)  # type: ignore[arg-type]
    assert isinstance(rnn, RecurrentEncoder)
    return rnn


def test_initial_state_and_output_dim() -> None:
    rnn = recurrent(spaces.Box(-1, 1, (3,)), num_layers=2, hidden=(16,))
    h, c = rnn.initial_state(5)
    assert rnn.output_dim == 8
    assert h.shape == c.shape == (2, 5, 8) and not h.any() and not c.any()
    assert isinstance(rnn.encoder, ObservationEncoder) and rnn.encoder.output_dim == 16


def test_state_is_zeroed_for_rows_whose_episode_starts() -> None:
    rnn = recurrent(spaces.Box(-1, 1, (3,)))
    obs = torch.randn(3, 3)
    state = random_state(rnn, 3)
    out, (h, c) = rnn(obs, state, torch.tensor([True, False, True]))
    fresh, (h0, c0) = rnn(obs, rnn.initial_state(3), torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(out[[0, 2]], fresh[[0, 2]])
    torch.testing.assert_close(h[:, [0, 2]], h0[:, [0, 2]])
    torch.testing.assert_close(c[:, [0, 2]], c0[:, [0, 2]])
    assert (out[1] - fresh[1]).abs().max() > 1e-3
    as_float, _ = rnn(obs, state, torch.tensor([1.0, 0.0, 1.0]))
    assert torch.equal(as_float, out)


def test_state_is_carried_when_no_episode_starts() -> None:
    rnn = recurrent(spaces.Discrete(5))
    no_start = torch.zeros(2, dtype=torch.bool)
    _, state = rnn(torch.tensor([1, 2]), rnn.initial_state(2), no_start)
    carried, _ = rnn(torch.tensor([3, 4]), state, no_start)
    fresh, _ = rnn(torch.tensor([3, 4]), rnn.initial_state(2), no_start)
    assert (carried - fresh).abs().max() > 1e-3


@pytest.mark.parametrize("space", [spaces.Discrete(5), bool_box((5, 5, 2))],
                         ids=["discrete", "bool-image"])
def test_sequence_equals_step_by_step(space: spaces.Space) -> None:
    rnn = recurrent(space)
    steps, size = 6, 3
    obs_seq = batch(space, steps * size).view(steps, size, *batch(space, 1).shape[1:])
    starts = torch.zeros(steps, size, dtype=torch.bool)
    starts[0, 0] = starts[2, 1] = starts[3, 0] = starts[5, 2] = True
    state = random_state(rnn, size)

    seq_out, (seq_h, seq_c) = rnn.forward_sequence(obs_seq, state, starts)
    # The features alone, without the final state, are the same numbers.
    assert torch.equal(rnn.sequence_outputs(obs_seq, state, starts), seq_out)
    step_out, cell_out, cell_state = [], [], state
    for t in range(steps):
        out, state = rnn(obs_seq[t], state, starts[t])
        step_out.append(out)
        # `step` (torch.lstm_cell) agrees with the module's step.
        out, cell_state = rnn.step(obs_seq[t], cell_state, starts[t])
        cell_out.append(out)
    assert seq_out.shape == (steps, size, 8)
    torch.testing.assert_close(seq_out, torch.stack(step_out))
    torch.testing.assert_close(torch.stack(cell_out), torch.stack(step_out))
    torch.testing.assert_close(seq_h, state[0])
    torch.testing.assert_close(seq_c, state[1])
    torch.testing.assert_close(cell_state, state)

    # Row 1 starts an episode at t=2: from there it is a fresh run over obs_seq[2:].
    fresh, _ = rnn.forward_sequence(obs_seq[2:, [1]], rnn.initial_state(1),
                                    torch.zeros(steps - 2, 1, dtype=torch.bool))
    torch.testing.assert_close(seq_out[2:, 1], fresh[:, 0])


def test_a_two_layer_lstm_steps_and_replays_alike() -> None:
    rnn = recurrent(spaces.Box(-1, 1, (3,)), num_layers=2)
    steps, size = 5, 4
    obs_seq = torch.randn(steps, size, 3)
    starts = torch.zeros(steps, size)
    starts[1, 0] = starts[4, 1] = starts[0, 2] = 1.0  # env 3 carries its state throughout
    state = cell_state = random_state(rnn, size)
    seq_out, seq_state = rnn.forward_sequence(obs_seq, state, starts)
    outs, cell_outs = [], []
    for t in range(steps):
        out, state = rnn(obs_seq[t], state, starts[t])
        cell, cell_state = rnn.step(obs_seq[t], cell_state, starts[t])
        outs.append(out)
        cell_outs.append(cell)
    torch.testing.assert_close(seq_out, torch.stack(outs))
    torch.testing.assert_close(torch.stack(cell_outs), torch.stack(outs))
    torch.testing.assert_close(seq_state, state)
    torch.testing.assert_close(cell_state, state)


def test_episode_start_shape_is_checked() -> None:
    rnn = recurrent(spaces.Discrete(5))
    with pytest.raises(ValueError, match=r"episode_starts must have shape \(T, B\)"):
        rnn.forward_sequence(torch.zeros(4, 2, dtype=torch.long), rnn.initial_state(2),
                             torch.zeros(4))
    with pytest.raises(TypeError, match="int output_dim"):
        RecurrentEncoder(nn.Linear(2, 2))


# -- summary ----------------------------------------------------------------------------------


def test_summary_rows_of_a_tiny_mlp() -> None:
    mlp = MLP(4, (8,), "relu", out_dim=2)
    result = summary(mlp, torch.zeros(3, 4))
    assert [(r.name, r.type, r.output_shape, r.params) for r in result.rows] == [
        ("layers.0", "Linear", (3, 8), 40), ("layers.1", "ReLU", (3, 8), 0),
        ("layers.2", "Linear", (3, 2), 18)]
    assert result.total_params == result.trainable_params == 58
    mlp.layers[0].requires_grad_(False)
    frozen = summary(mlp, torch.zeros(3, 4))
    assert frozen.trainable_params == 18 and frozen.non_trainable_params == 40


@pytest.mark.parametrize(("space", "kind"), [
    (spaces.Box(0, 255, (84, 84, 4), np.uint8), "auto"), (spaces.Box(0, 1, (10, 10, 7)), "auto"),
    (spaces.Discrete(16), "mlp"), (spaces.Box(0, 1, (10, 10, 7)), "mlp"),
], ids=["nature", "small", "onehot-mlp", "image-mlp"])
def test_summary_totals_equal_the_parameter_count(space: spaces.Space, kind: str) -> None:
    encoder = make_encoder(space, kind)
    result = summary(encoder, batch(space, 2))
    count = sum(p.numel() for p in encoder.parameters())
    assert result.total_params == count
    assert sum(row.params for row in result.rows) == count


def test_summary_of_the_recurrent_encoder_and_shared_layers() -> None:
    rnn = recurrent(spaces.Box(-1, 1, (3,)), hidden=(16,))
    obs, starts = torch.zeros(2, 3), torch.zeros(2)
    result = summary(rnn, obs, rnn.initial_state(2), starts)
    assert result.total_params == sum(p.numel() for p in rnn.parameters())
    lstm_row = next(row for row in result.rows if row.name == "lstm")
    assert lstm_row.output_shape == [(1, 2, 8), [(1, 2, 8), (1, 2, 8)]]
    seq = summary(rnn, torch.zeros(5, 2, 3), rnn.initial_state(2), torch.zeros(5, 2),
                  forward=rnn.forward_sequence)
    # The whole sequence goes through the LSTM in one call (packed episode segments).
    assert next(row for row in seq.rows if row.name == "lstm").calls == 1

    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.ReLU(), shared)
    tied_summary = summary(tied, torch.zeros(1, 3))
    assert tied_summary.total_params == 12 == sum(row.params for row in tied_summary.rows)
    assert tied_summary.rows[0].calls == 2
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight
    weight_tied = summary(nn.Sequential(first, second), torch.zeros(1, 3))
    assert [row.params for row in weight_tied.rows] == [12, 3]
    assert weight_tied.total_params == 15


def test_summary_removes_hooks_and_restores_training_flags() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))
    model.train()
    model[1].eval()
    summary(model, torch.randn(5, 3))
    assert all(not m._forward_hooks for m in model.modules())
    assert [m.training for m in model] == [True, False, True]
    assert model[2].num_batches_tracked == 0
    with pytest.raises(RuntimeError):
        summary(model, torch.zeros(5, 7))
    assert all(not m._forward_hooks for m in model.modules()) and model.training


def test_summary_table_renders_rows_and_totals() -> None:
    table = summary_table(summary(MLP(4, (8,), out_dim=2), torch.zeros(1, 4)), title="mlp")
    console = Console(file=io.StringIO(), width=100, record=True)
    console.print(table)
    text = console.export_text()
    for expected in ("layers.0", "Linear", "(1, 8)", "Total params", "58", "Trainable params",
                     "Non-trainable params"):
        assert expected in text


# -- Stable-Baselines3 ------------------------------------------------------------------------


@pytest.fixture
def _global_rngs() -> Iterator[None]:
    """SB3's seeding sets the python and numpy global RNGs: restore them afterwards."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)


@pytest.mark.usefixtures("_global_rngs")
def test_sb3_ppo_trains_through_the_gymkit_extractor() -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    from toolkit.nets.sb3 import GymkitExtractor

    model = sb3.PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=2, seed=0,
                    device="cpu", policy_kwargs=dict(
                        features_extractor_class=GymkitExtractor,
                        features_extractor_kwargs=dict(kind="auto", hidden=(32,))))
    extractor = model.policy.features_extractor
    assert isinstance(extractor, GymkitExtractor) and extractor.features_dim == 32
    before = [p.detach().clone() for p in extractor.parameters()]
    model.learn(total_timesteps=128)
    assert model.num_timesteps == 128
    assert any(not torch.equal(old, new) for old, new in zip(before, extractor.parameters(),
                                                              strict=True))
    obs = np.array([0.01, -0.02, 0.03, 0.04], dtype=np.float32)
    action, _ = model.predict(obs, deterministic=True)
    assert model.action_space.contains(int(action))
    actions, _ = model.predict(np.stack([obs, -obs]), deterministic=True)
    assert actions.shape == (2,)


@pytest.mark.parametrize("space", [
    spaces.Discrete(16), spaces.MultiDiscrete([2, 3]), spaces.Box(-1, 1, (4,)),
    spaces.Box(0, 255, (4, 36, 36), np.uint8), bool_box((10, 10, 4)),
], ids=["discrete", "multidiscrete", "box", "uint8-image", "bool-hwc-image"])
def test_sb3_extractor_does_not_preprocess_twice(space: spaces.Space) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.preprocessing import preprocess_obs

    from toolkit.nets.sb3 import GymkitExtractor

    extractor = GymkitExtractor(space)
    raw_encoder = make_encoder(space)
    raw_encoder.load_state_dict(extractor.encoder.state_dict())
    obs = batch(space, 4)
    by_sb3 = preprocess_obs(obs, space, normalize_images=True)
    assert isinstance(by_sb3, torch.Tensor)
    assert extractor.features_dim == raw_encoder.output_dim
    torch.testing.assert_close(extractor(by_sb3), raw_encoder(obs))


def test_sb3_extractor_refuses_lstm() -> None:
    pytest.importorskip("stable_baselines3")
    from toolkit.nets.sb3 import GymkitExtractor

    with pytest.raises(ValueError, match="RecurrentPPO"):
        GymkitExtractor(spaces.Box(-1, 1, (4,)), kind="lstm")


def test_missing_sb3_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "stable_baselines3"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)
    monkeypatch.delitem(sys.modules, "toolkit.nets.sb3", raising=False)
    with pytest.raises(ImportError, match="pip install stable-baselines3"):
        importlib.import_module("toolkit.nets.sb3")


def test_imports_stay_light() -> None:
    code = ("import sys, toolkit; assert 'torch' not in sys.modules; import toolkit.nets; "
            "assert 'stable_baselines3' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
