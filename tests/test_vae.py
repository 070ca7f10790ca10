"""The VAE: its presets' sizes, its likelihoods and KL, learning on digits, the
importance-weighted NLL, images, and the CLI around generative runs."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from generative.vae import VAE, VAEConfig, VAETrainer, gaussian_kl
from toolkit import launch
from toolkit.cli import app
from toolkit.errors import ConfigError, GymkitError
from toolkit.testing import check_plugin, make_trainer
from toolkit.trainer import FINAL_EVAL_SEED, PERIODIC_EVAL_SEED, Budget


def preset_config(name: str) -> VAEConfig:
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    return VAEConfig(**{k: v for k, v in VAETrainer.presets[name].items() if k in fields})


@pytest.mark.parametrize(("preset", "parameters"), [("textbook", 404_244),
                                                    ("pytorch-examples", 652_824)])
def test_presets_have_their_sources_sizes_on_mnist(preset: str, parameters: int) -> None:
    model = VAE((1, 28, 28), preset_config(preset))
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_the_likelihoods_and_the_kl_are_the_textbook_formulas() -> None:
    x = torch.rand(5, 1, 4, 4).round()
    output = torch.randn(5, 1, 4, 4)
    bernoulli = VAE((1, 4, 4), VAEConfig(hidden=[8], latent_dim=2))
    expected = torch.distributions.Bernoulli(logits=output).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(bernoulli.log_likelihood(x, output), expected)
    gaussian = VAE((1, 4, 4), VAEConfig(hidden=[8], latent_dim=2, likelihood="gaussian"))
    assert gaussian.log_sigma is not None
    with torch.no_grad():
        gaussian.log_sigma.fill_(-0.7)
    expected = torch.distributions.Normal(output, math.exp(-0.7)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(gaussian.log_likelihood(x, output), expected)
    mean, log_var = torch.randn(6, 3), torch.randn(6, 3)
    q = torch.distributions.Normal(mean, (0.5 * log_var).exp())
    prior = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    torch.testing.assert_close(gaussian_kl(mean, log_var),
                               torch.distributions.kl_divergence(q, prior).sum(-1))


def train(trainer: VAETrainer) -> VAETrainer:
    while trainer.budget_left() > 0:
        trainer.train_step()
    return trainer


def vae(seed: int = 0, epochs: int = 100, **overrides: object) -> VAETrainer:
    trainer = make_trainer(VAETrainer, "digits", overrides, seed=seed,
                           budget=Budget("epochs", epochs))
    assert isinstance(trainer, VAETrainer)
    return trainer


@pytest.mark.slow
def test_the_vae_beats_independent_pixels_on_digits() -> None:
    """100 epochs: validation neg ELBO 44.6 nats untrained, 23.05 after (seed 0; 23.08 and
    23.11 for seeds 1 and 2); the best model of independent pixels scores 26.8."""
    trainer = vae()
    validation = trainer.seed + PERIODIC_EVAL_SEED
    before = trainer.evaluate(1, validation)["eval/neg_elbo"]
    after = train(trainer).evaluate(1, validation)
    x, _ = trainer.eval_data("validation")
    p = trainer.train_x.mean(0).clamp(1e-3, 1 - 1e-3)  # each pixel's frequency
    independent = float(-(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1).mean())
    assert before > 43.0
    assert after["eval/neg_elbo"] < 24.0 and after["eval/neg_elbo"] < independent - 2.5
    assert after["eval/neg_elbo"] == pytest.approx(after["eval/recon"] + after["eval/kl"])
    assert after["eval/kl"] > 1.0  # the latent code is used


def test_the_importance_weighted_nll_is_below_the_elbo_and_tightens() -> None:
    trainer = train(vae(epochs=30))
    final = trainer.seed + FINAL_EVAL_SEED
    estimates = {}
    for k in (1, 10, 100):
        trainer.cfg.nll_samples = k
        estimates[k] = trainer.evaluate(1, final)
    neg_elbo = estimates[1]["eval/neg_elbo"]
    # K = 1 is a one-sample estimate of the negative ELBO itself.
    assert estimates[1]["eval/nll_iw"] == pytest.approx(neg_elbo, abs=0.3)
    assert estimates[100]["eval/nll_iw"] < estimates[10]["eval/nll_iw"] < neg_elbo - 0.2


def test_the_importance_weighted_nll_with_the_prior_as_proposal_is_plain_monte_carlo() -> None:
    """With q(z|x) = p(z) the weights are p(x|z_k): the estimate is -log of their mean."""
    trainer = vae(epochs=1)
    model = trainer.model
    with torch.no_grad():
        for head in (model.mean, model.log_var):
            head.weight.zero_()
            head.bias.zero_()
    x, _ = trainer.eval_data("test")
    x = x[:7]
    got = trainer.importance_weighted_nll(x, 9, torch.Generator().manual_seed(4))
    z = torch.randn((9, 7, trainer.cfg.latent_dim), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = model.decode(z.flatten(0, 1)).view(9, *x.shape)
    likelihood = torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(2).sum(2).exp()
    torch.testing.assert_close(got, -likelihood.mean(0).log())


def test_the_iw_nll_in_passes_is_one_log_sum_exp_over_all_the_samples(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """K samples are decoded a pass of at most IW_DECODED images at a time (memory stays
    bounded at any K); the per-pass log-sum-exps combine into the one over all K weights."""
    import generative.vae as vae_module

    trainer = vae(epochs=1)
    x, _ = trainer.eval_data("test")
    x = x[:4]
    monkeypatch.setattr(vae_module, "IW_DECODED", 12)  # 3 samples of the 4 images a pass
    decoded: list[int] = []
    decode = trainer.model.decode
    monkeypatch.setattr(trainer.model, "decode", lambda z: decoded.append(len(z)) or decode(z))
    got = trainer.importance_weighted_nll(x, 10, torch.Generator().manual_seed(5))
    assert decoded == [12, 12, 12, 4]
    generator, weights = torch.Generator().manual_seed(5), []
    with torch.no_grad():
        mean, log_var = trainer.model.encode(x)
        std = (0.5 * log_var).exp()
        for k in (3, 3, 3, 1):  # the same draws, in the same order
            eps = torch.randn((k, *mean.shape), generator=generator)
            z = mean + std * eps
            log_px = trainer.model.log_likelihood(x.expand(k, *x.shape).flatten(0, 1),
                                                  decode(z.flatten(0, 1))).view(k, len(x))
            normal = torch.distributions.Normal(0.0, 1.0)
            weights.append(log_px + normal.log_prob(z).sum(-1) - normal.log_prob(eps).sum(-1)
                           + std.log().sum(-1))
    expected = -(torch.logsumexp(torch.cat(weights), 0) - math.log(10))
    torch.testing.assert_close(got, expected)


def test_eval_seed_gives_an_independent_estimate(tmp_path: Path) -> None:
    code, out = invoke("run", "generative", "vae", "--epochs", "1", "-q",
                       "--runs-dir", str(tmp_path))
    assert code == 0, out
    (run,) = tmp_path.iterdir()

    def nll(*extra: str) -> str:
        code, out = invoke("eval", str(run), "--nll-samples", "3", *extra)
        assert code == 0, out
        (line,) = [line for line in out.splitlines() if "nll iw" in line]
        return line

    assert nll() == nll()  # the run's final evaluation's draws, by default
    assert nll("--eval-seed", "11") == nll("--eval-seed", "11") != nll()
    code, out = invoke("eval", str(run), "--eval-seed", "-1")
    assert code == 2 and "--eval-seed must be in 0..4294967295" in out


def test_the_final_evaluation_measures_the_test_split() -> None:
    trainer = vae(epochs=1)
    assert trainer.eval_split(trainer.seed + FINAL_EVAL_SEED) == "test"
    assert trainer.eval_split(trainer.seed + PERIODIC_EVAL_SEED) == "validation"
    test, validation = (trainer.evaluate(1, trainer.seed + offset)["eval/neg_elbo"]
                        for offset in (FINAL_EVAL_SEED, PERIODIC_EVAL_SEED))
    assert test != validation
    # Dynamic binarization: evaluations see one fixed draw, the same whatever the run's seed.
    x, _ = trainer.eval_data("test")
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(x, vae(seed=7, epochs=1).eval_data("test")[0])
    threshold = vae(epochs=1, binarize="threshold").eval_data("test")[0]
    assert not torch.equal(x, threshold)
    grey = torch.as_tensor(trainer.dataset.split("test").x)
    assert torch.equal(threshold, (grey > 0.5).float())


def test_kl_warm_up_rises_linearly_to_beta() -> None:
    trainer = vae(epochs=4, kl_warmup_epochs=2.0, beta=0.5, batch_size=1437)  # 1 batch
    weights = []
    for _ in range(4):
        metrics = trainer.train_step()
        weights.append(metrics["charts/kl_weight"])
        # The loss weighs the KL so (one batch an epoch: the weight did not change in it).
        assert metrics["losses/loss"] == pytest.approx(
            metrics["losses/recon"] + metrics["charts/kl_weight"] * metrics["losses/kl"])
    assert weights == [0.25, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("overrides", [{}, {"architecture": "conv", "likelihood": "gaussian"},
                                       {"latent_dim": 2, "binarize": "threshold"}],
                         ids=["mlp-bernoulli", "conv-gaussian", "2d-latent"])
def test_the_vae_keeps_the_plugin_contract(overrides: dict[str, object]) -> None:
    check_plugin(VAETrainer, "digits", overrides=overrides)


def test_images_and_samples() -> None:
    trainer = vae(epochs=1, latent_dim=2)
    images = trainer.images()
    assert set(images) == {"samples/reconstructions", "samples/generated", "samples/manifold",
                           "images/latent_scatter"}
    for image in images.values():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    samples = trainer.sample(5, seed=3)
    assert samples.shape == (5, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1
    assert np.array_equal(samples, trainer.sample(5, seed=3))
    assert "samples/manifold" not in vae(epochs=1).images()


def test_bad_input_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="latent_dim must be in"):
        vae(latent_dim=0)
    with pytest.raises(ConfigError, match="likelihood must be one of bernoulli, gaussian"):
        vae(likelihood="poisson")
    with pytest.raises(GymkitError, match="sides must be divisible by 4, but this dataset's "
                                          "images are 6x6"):
        VAE((1, 6, 6), VAEConfig(architecture="conv"))
    from toy_generative import ToyGaussian, registered  # with a dataset of 2-D points

    with registered("toy-gaussian", ToyGaussian), pytest.raises(GymkitError,
                                                                match="vae needs images"):
        make_trainer(VAETrainer, "toy-points")


# -- the command line ---------------------------------------------------------------------


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_preset_runs_from_the_cli_and_is_sampled_and_evaluated(tmp_path: Path) -> None:
    code, out = invoke("run", "generative", "vae", "--preset", "textbook", "--epochs", "2",
                       "-q", "--runs-dir", str(tmp_path / "runs"))
    assert code == 0, out
    (run,) = (tmp_path / "runs").iterdir()
    assert '"latent_dim": 2' in (run / "config.json").read_text()
    code, out = invoke("sample", str(run), "--n", "16", "--out", str(tmp_path / "grid.png"))
    assert code == 0 and (tmp_path / "grid.png").stat().st_size > 0, out
    code, out = invoke("sample", str(run), "--out", str(tmp_path / "grid.png"))
    assert code == 2 and "exists already" in out
    code, out = invoke("eval", str(run), "--nll-samples", "20")
    assert code == 0 and "nll iw" in out, out


def test_cli_errors_name_the_fix(tmp_path: Path) -> None:
    code, out = invoke("run", "generative", "vae", "--preset", "texbook", "--runs-dir",
                       str(tmp_path))
    assert code == 2 and "did you mean" in out and "textbook" in out, out
    code, out = invoke("run", "generative", "vae", "--dataset", "mnist", "--data-dir",
                       str(tmp_path / "empty"), "--runs-dir", str(tmp_path))
    assert code == 2 and "t10k-images-idx3-ubyte" in out and "--data-dir" in out, out
    assert not list(tmp_path.glob("*-vae-*"))  # no run directory for a run that never began
    with pytest.raises(GymkitError, match="--data-dir is for a generative trainer"):
        launch.prepare("agent", "frozenlake", data_dir=tmp_path)
