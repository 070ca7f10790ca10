"""gymkit encoders as a Stable-Baselines3 features extractor.

    from stable_baselines3 import PPO
    from toolkit.nets.sb3 import GymkitExtractor

    PPO("MlpPolicy", env, policy_kwargs=dict(
        features_extractor_class=GymkitExtractor,
        features_extractor_kwargs=dict(kind="mlp", hidden=(64, 64))))

This is the only gymkit module that imports stable_baselines3.
"""

from __future__ import annotations

from typing import Any

import torch
from gymnasium import spaces

try:
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
except ImportError as exc:
    raise ImportError("toolkit.nets.sb3 needs Stable-Baselines3: "
                      "pip install stable-baselines3") from exc

from toolkit.nets.encoders import ObservationEncoder, make_encoder, resolve_kind


class GymkitExtractor(BaseFeaturesExtractor):
    """A `make_encoder` encoder of `kind` (``kwargs`` go to it) for SB3 policies.

    SB3's policy runs ``preprocess_obs`` before calling a features extractor: Discrete and
    MultiDiscrete observations arrive one-hot, every observation arrives as floats, and
    images that SB3 counts as images (uint8 with bounds 0..255) arrive divided by 255 when
    the policy's ``normalize_images`` is True (its default). SB3 also wraps envs with
    channels-last uint8 images in ``VecTransposeImage``, so the space given here is then
    already channels-first. This extractor therefore builds its encoder with
    ``preprocessed_input=True``: it changes no values (no second one-hot, no second division
    by 255) and only flattens vectors and moves the channels of a channels-last image (a
    float or bool one, such as MinAtar's, which SB3 leaves as it is) to the front. With
    ``normalize_images=False`` images reach the encoder unscaled, as SB3's own extractors
    see them.

    ``kind="lstm"`` is refused: SB3 calls extractors without a recurrent state; use
    sb3-contrib's ``RecurrentPPO``, whose policy adds its own LSTM after the extractor.
    """

    def __init__(self, observation_space: spaces.Space, kind: str = "auto",
                 **kwargs: Any) -> None:
        if resolve_kind(observation_space, kind) == "lstm":
            raise ValueError("GymkitExtractor cannot be kind='lstm': SB3 passes no recurrent "
                             "state to extractors; use sb3_contrib.RecurrentPPO with a "
                             "feedforward kind (auto, flat, mlp, cnn)")
        encoder = make_encoder(observation_space, kind, preprocessed_input=True, **kwargs)
        assert isinstance(encoder, ObservationEncoder)
        super().__init__(observation_space, encoder.output_dim)
        self.encoder = encoder

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.encoder(observations)
