"""Networks shared by agents and generative models: MLP, CNN and LSTM encoders built from a
gymnasium observation space, their preprocessing, and a model summary.

This package imports torch; `import toolkit` does not import it. The Stable-Baselines3
extractor lives in `toolkit.nets.sb3`, which is not imported here.
"""

from toolkit.nets.cnn import NatureCNN, SmallCNN
from toolkit.nets.encoders import KINDS, ObservationEncoder, make_encoder, resolve_kind
from toolkit.nets.lstm import RecurrentEncoder, State
from toolkit.nets.mlp import ACTIVATIONS, MLP, activation_class, layer_init
from toolkit.nets.preprocess import Preprocessor, check_space, image_layout, is_image_space
from toolkit.nets.summary import ModelSummary, SummaryRow, summary, summary_table

__all__ = [
    "ACTIVATIONS",
    "KINDS",
    "MLP",
    "ModelSummary",
    "NatureCNN",
    "ObservationEncoder",
    "Preprocessor",
    "RecurrentEncoder",
    "SmallCNN",
    "State",
    "SummaryRow",
    "activation_class",
    "check_space",
    "image_layout",
    "is_image_space",
    "layer_init",
    "make_encoder",
    "resolve_kind",
    "summary",
    "summary_table",
]
