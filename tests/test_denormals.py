"""toolkit.denormals: subnormal floats flushed to zero within a block, and only there."""

from __future__ import annotations

import torch

from toolkit.denormals import flush_denormals


def test_flush_denormals_flushes_inside_and_restores_outside() -> None:
    def subnormal() -> float:
        return float(torch.full((1,), 1e-38).mul_(1e-3).item())

    assert subnormal() != 0.0
    with flush_denormals(torch.device("cpu")):
        assert subnormal() == 0.0
    assert subnormal() != 0.0
    torch.set_flush_denormal(True)
    try:  # already on: left on
        with flush_denormals(torch.device("cpu")):
            assert subnormal() == 0.0
        assert subnormal() == 0.0
    finally:
        torch.set_flush_denormal(False)


def test_image_trainers_flush_them_in_their_training_loop_only() -> None:
    from generative.vae import VAETrainer
    from toolkit.denormals import _flush_denormal_is_on
    from toolkit.testing import make_trainer
    from toolkit.trainer import Budget

    trainer = make_trainer(VAETrainer, "digits", {"batch_size": 500},
                           budget=Budget("epochs", 1))
    assert isinstance(trainer, VAETrainer)
    inside = [_flush_denormal_is_on() for _ in trainer.batches()]
    assert inside and all(inside)
    assert not _flush_denormal_is_on()
