"""The dbn plugin (`generative.dbn`): the contract with resumes inside pretraining, at and
across the boundary; how --epochs is counted; initialize_from_rbms at the boundary;
learning on digits; the presets; errors; the command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from generative.dbn import DBNTrainer
from generative.dbn_model import LayerPretraining
from generative.dbn_sklearn import PRESETS
from generative.rbm_model import RBM, data_visible_bias
from toolkit import launch
from toolkit.cli import app
from toolkit.errors import ConfigError, GymkitError
from toolkit.images import image_grid
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import PERIODIC_EVAL_SEED, Budget

#: A small network: a contract check or a counting test takes a fraction of a second.
SMALL: dict[str, Any] = {"hidden": [16, 8], "rbm_epochs": 3}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dbn(epochs: int, seed: int = 0, **overrides: object) -> DBNTrainer:
    made = make_trainer(DBNTrainer, "digits", overrides, seed=seed,
                        budget=Budget("epochs", epochs))
    assert isinstance(made, DBNTrainer)
    return made


def train(trainer: DBNTrainer) -> DBNTrainer:
    while trainer.budget_left() > 0:
        trainer.train_step()
    return trainer


def rbm(trainer: DBNTrainer, layer: int) -> RBM:
    module = trainer.model.rbms[layer]
    assert isinstance(module, RBM)
    return module


def validation_accuracy(trainer: DBNTrainer) -> float:
    return trainer.evaluate(1, trainer.seed + PERIODIC_EVAL_SEED)["eval/accuracy"]


# -- the contract -------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    # check_plugin checkpoints after 3 train_steps and resumes for 3 more.
    {"hidden": [16], "rbm_epochs": 6},      # inside layer 0; the momentum switches at 5
    {"hidden": [16, 8], "rbm_epochs": 2},   # inside layer 1, then across the boundary at 4
    {"hidden": [16], "rbm_epochs": 3},      # right at the boundary, after initialize
    {"hidden": [16, 8], "rbm_epochs": 1},   # inside fine-tuning
    {"hidden": [16], "rbm_epochs": 0},      # no pretraining at all
], ids=["mid-layer-0", "mid-layer-1-across", "at-boundary", "fine-tuning", "no-pretraining"])
def test_the_dbn_keeps_the_plugin_contract(overrides: dict[str, Any]) -> None:
    check_plugin(DBNTrainer, "digits", overrides=overrides)


def test_a_resume_inside_a_layer_restores_its_optimizer() -> None:
    """The resumed layer continues with its momentum buffers and epoch count."""
    a = dbn(10, **SMALL)
    for _ in range(4):  # layer 1's first epoch
        a.train_step()
    state = copy.deepcopy(a.state_dict())  # as from a file: b must not share a's tensors
    assert state["pretrained"] == 4 and state["layer"]["epochs"] == 1
    b = dbn(10, seed=1, **SMALL)
    b.load_state_dict(state)
    assert b.pretraining is not None and b.pretraining.rbm is rbm(b, 1)
    moments = b.pretraining.optimizer.state_dict()["state"]
    assert moments and all(torch.equal(moments[i]["momentum_buffer"],
                                       state["layer"]["optimizer"]["state"][i][
                                           "momentum_buffer"]) for i in moments)
    assert b.train_step() == a.train_step()


# -- counting the budget ------------------------------------------------------------------


def test_epochs_count_pretraining_then_fine_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    """hidden [16, 8, 4] x 3 RBM epochs: epochs 1-3 train RBM 0 on the images, 4-6 RBM 1 on
    RBM 0's hidden probabilities, 7-9 RBM 2 on RBM 1's, each RBM starting from the log-odds
    visible biases of its data; then the Linear layers take the RBMs' weights (once, at the
    end of epoch 9) and epochs 10-11 fine-tune."""
    trainer = dbn(11, hidden=[16, 8, 4], rbm_epochs=3)
    calls: list[int] = []
    original = trainer.model.initialize_from_rbms

    def initialize() -> None:
        calls.append(trainer.progress()["epochs"])
        original()

    monkeypatch.setattr(trainer.model, "initialize_from_rbms", initialize)
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # layer, data, visible biases
    epoch = LayerPretraining.epoch

    def recording(self: LayerPretraining, data: torch.Tensor, *args: Any) -> float:
        layer = next(i for i, r in enumerate(trainer.model.rbms) if r is self.rbm)
        seen.append((layer, data.clone(), self.rbm.visible_bias.clone()))
        return epoch(self, data, *args)

    monkeypatch.setattr(LayerPretraining, "epoch", recording)
    images = trainer.train_x.flatten(1)
    per_epoch = trainer.shuffled.batches_per_epoch
    rows: list[tuple[float, float | None]] = []
    for done in range(1, 12):
        before = [rbm(trainer, i).weight.clone() for i in range(3)]
        metrics = trainer.train_step()
        rows.append((metrics["charts/phase"], metrics.get("charts/layer")))
        assert trainer.progress() == {"epochs": done, "steps": done * per_epoch}
        changed = [not torch.equal(before[i], rbm(trainer, i).weight) for i in range(3)]
        assert changed == [done <= 3, 4 <= done <= 6, 7 <= done <= 9], done
        linear = trainer.model.layers[0]
        assert isinstance(linear, torch.nn.Linear)
        taken = torch.equal(linear.weight, rbm(trainer, 0).weight.t())
        assert taken == (done == 9), done  # fine-tuning moves them on at once
        assert ("losses/recon_error" in metrics) == (done <= 9)
        assert ("losses/loss" in metrics) == (done > 9)
    assert rows == [(0.0, 0.0)] * 3 + [(0.0, 1.0)] * 3 + [(0.0, 2.0)] * 3 + [(1.0, None)] * 2
    assert calls == [9]
    assert [layer for layer, _, _ in seen] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    for layer in range(3):
        want = trainer.model.up(images, layer)  # the RBMs below are final by now
        for _, data, _ in seen[3 * layer:3 * layer + 3]:
            assert torch.equal(data, want), layer
        first_bias = seen[3 * layer][2]
        assert torch.equal(first_bias, data_visible_bias(want)), layer
        assert not torch.equal(seen[3 * layer + 1][2], first_bias), layer  # then it learns


def test_the_layers_take_the_rbm_weights_at_the_boundary() -> None:
    trainer = dbn(3, hidden=[16, 8], rbm_epochs=1)
    head = trainer.model.head
    assert head is not None
    head_before = head.weight.clone()
    for _ in range(2):
        trainer.train_step()
    for i, layer in enumerate(trainer.model.layers):
        assert isinstance(layer, torch.nn.Linear)
        assert torch.equal(layer.weight, rbm(trainer, i).weight.t())
        assert torch.equal(layer.bias, rbm(trainer, i).hidden_bias)
    assert torch.equal(head.weight, head_before)  # the head has no RBM: it stays random
    frozen = [p.clone() for p in trainer.model.rbms.parameters()]
    trainer.train_step()
    assert all(torch.equal(p, q) for p, q in zip(frozen, trainer.model.rbms.parameters(),
                                                  strict=True))


def test_a_budget_within_pretraining_says_fine_tuning_never_starts() -> None:
    short = train(dbn(6, **SMALL))  # exactly P = 2 x 3
    assert short.phase == "fine-tuning" and short.shuffled.epochs == 0
    summary = short.summary()
    assert summary["pretraining_epochs"] == 6 and summary["fine_tuning_epochs"] == 0
    assert "fine-tuning never starts" in summary["warning"]
    assert "give --epochs more than 6" in summary["warning"]
    assert short.panels() == [("warning", summary["warning"])]
    shorter = dbn(4, **SMALL)
    assert "budget of 4 epochs" in shorter.summary()["warning"]
    enough = dbn(7, **SMALL)
    assert "warning" not in enough.summary() and enough.panels() == []
    assert enough.summary()["fine_tuning_epochs"] == 1


def test_evaluating_between_epochs_changes_nothing() -> None:
    """Evaluations turn dropout off and back on, and draw nothing."""
    quiet, watched = dbn(5, hidden=[16], rbm_epochs=2), dbn(5, hidden=[16], rbm_epochs=2)
    for _ in range(5):
        watched.evaluate(1, 0)
        watched.images()
        assert quiet.train_step() == watched.train_step()
    assert watched.model.training and watched.model.dropout.p == 0.2  # dropout was on


# -- learning -----------------------------------------------------------------------------


def test_the_textbook_dbn_learns_digits_in_30_epochs() -> None:
    """The classifier preset's settings, 20 pretraining + 10 fine-tuning epochs: validation
    accuracy 0.956 / 0.956 / 0.950 (seeds 0, 1, 2; 0.6 s each); chance is 0.1."""
    trainer = dbn(30)
    before = validation_accuracy(trainer)
    after = validation_accuracy(train(trainer))
    assert before < 0.3 and after > 0.93
    assert trainer.evaluate(1, 0)["eval/recon_error"] < 2.0  # 11.5 before pretraining


def test_pretraining_is_what_makes_the_sigmoid_network_learn() -> None:
    """sigmoid-classic (sigmoid units, SGD at 1.0) after 10 fine-tuning epochs: validation
    accuracy 0.950 / 0.961 / 0.950 after pretraining (30 epochs in all), 0.244 / 0.244 /
    0.283 from a random initialization (rbm_epochs=0, 10 epochs) (seeds 0, 1, 2)."""
    classic = {k: v for k, v in DBNTrainer.presets["sigmoid-classic"].items() if k != "epochs"}
    pretrained = validation_accuracy(train(dbn(30, **classic)))
    scratch = validation_accuracy(train(dbn(10, **{**classic, "rbm_epochs": 0})))
    assert pretrained > 0.9 and scratch < 0.8


def test_the_filters_are_logged_as_a_grid() -> None:
    trainer = dbn(1)
    filters = trainer.images()["samples/filters"]
    # 100 of the 256 filters, 10 to a row, each 8x8 drawn 7 times larger.
    assert filters.shape == image_grid(torch.zeros(100, 1, 8, 8).numpy(), columns=10,
                                       scale=7).shape
    assert filters.dtype.name == "uint8" and filters.min() == 0
    before = filters.copy()
    trainer.train_step()
    assert (trainer.images()["samples/filters"] != before).any()


# -- presets and errors -------------------------------------------------------------------


def test_the_presets_are_the_textbooks() -> None:
    textbook = PRESETS["classifier"]
    preset = DBNTrainer.presets["classifier"]
    assert preset == {"hidden": list(textbook["hidden_layers"]),
                      "lr_rbm": textbook["learning_rate_rbm"], "lr": textbook["learning_rate"],
                      "rbm_epochs": textbook["n_epochs_rbm"], "k": 1,
                      "batch_size": textbook["batch_size"], "activation": textbook["activation"],
                      "dropout": textbook["dropout"],
                      "epochs": 2 * textbook["n_epochs_rbm"] + textbook["n_iter_backprop"]}
    assert preset["epochs"] == 120 and DBNTrainer.default_budget == ("epochs", 120)
    defaults = DBNTrainer.Config().to_dict()
    assert {k: v for k, v in preset.items() if k != "epochs"} == {
        k: v for k, v in defaults.items() if k != "weight_decay_rbm"}
    classic = DBNTrainer.presets["sigmoid-classic"]
    assert {k for k in preset if preset[k] != classic[k]} == {"activation", "lr"}
    assert (classic["activation"], classic["lr"]) == ("sigmoid", 1.0)
    prepared = launch.prepare("generative", "digits", "dbn", hyperparams="sigmoid-classic")
    assert prepared.settings.epochs == 120 and prepared.spec["config"]["lr"] == 1.0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"hidden": []}, "hidden sizes must be positive, got []"),
    ({"hidden": [0]}, "hidden sizes must be positive, got [0]"),
    ({"dropout": 1.0}, "dropout must be in [0, 1), got 1.0"),
    ({"activation": "tanh"}, "activation must be one of relu, sigmoid, got 'tanh'"),
    ({"lr": 0.0}, "lr must be in (0, inf], got 0.0"),
    ({"rbm_epochs": -1}, "rbm_epochs must be in [0, inf], got -1"),
    ({"k": 0}, "k must be in [1, inf], got 0"),
])
def test_bad_config_is_refused_in_one_line(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        dbn(1, **overrides)
    assert str(error.value) == message


def test_an_unlabelled_dataset_or_a_budget_in_steps_is_refused() -> None:
    with pytest.raises(GymkitError) as error:
        make_trainer(DBNTrainer, "bars-and-stripes")
    assert str(error.value) == ("dbn fine-tunes a classifier, so it needs labelled images, "
                                "and bars-and-stripes has no labels; pick a labelled --dataset "
                                "(digits, mnist, ...)")
    with pytest.raises(ConfigError, match="dbn cannot count its budget in steps; use --epochs"):
        launch.prepare("generative", "digits", "dbn", flags={"steps": 100})


def test_a_checkpoint_of_another_config_is_refused() -> None:
    state = train(dbn(4, hidden=[16], rbm_epochs=4)).state_dict()
    with pytest.raises(GymkitError, match="4 pretraining epochs done, more than this config's 2"):
        dbn(4, hidden=[16], rbm_epochs=2).load_state_dict(state)


# -- the command line ---------------------------------------------------------------------


def test_the_cli_runs_the_dbn(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "generative", "dbn", "--dataset", "digits",
                                      "--epochs", "3", "-q", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "fine-tuning never starts" in " ".join(result.output.split())
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["progress"]["epochs"] == 3
    assert summary["pretraining_epochs"] == 20 and "warning" in summary
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["charts/layer"] for line in lines if "charts/layer" in line] == [0.0] * 3
    assert sum("eval/accuracy" in line for line in lines) == 3  # 2 periodic, 1 final
