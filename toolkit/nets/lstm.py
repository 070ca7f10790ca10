"""A recurrent core over any encoder, with the hidden state reset at episode starts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = tuple[torch.Tensor, torch.Tensor]


class RecurrentEncoder(nn.Module):
    """An encoder followed by an LSTM: observation batch + state -> features + new state.

    `encoder` is any module with an int ``output_dim`` that maps a batch ``(B, ...)`` to
    ``(B, encoder.output_dim)``, typically one from `make_encoder`, which takes raw
    observations. The state is a pair ``(h, c)``, each ``(num_layers, B, hidden_size)``, as
    `nn.LSTM` has it; `output_dim` is `hidden_size`.

    `forward` does one step and `forward_sequence` a ``(T, B, ...)`` sequence; both reset the
    state of a row to zeros *before* processing a step whose episode starts there, so a
    sequence gives the same features as stepping through it (recurrent PPO replays its
    rollout as sequences). ``ortho_init=True`` uses orthogonal LSTM weights and zero biases,
    as CleanRL's recurrent PPO does.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int = 128, num_layers: int = 1, *,
                 ortho_init: bool = False) -> None:
        super().__init__()
        in_dim = getattr(encoder, "output_dim", None)
        if not isinstance(in_dim, int):
            raise TypeError(f"RecurrentEncoder needs an encoder with an int output_dim, got "
                            f"{type(encoder).__name__}")
        self.encoder = encoder
        self.lstm = nn.LSTM(in_dim, hidden_size, num_layers)
        if ortho_init:
            for name, param in self.lstm.named_parameters():
                if name.startswith("weight"):
                    nn.init.orthogonal_(param, 1.0)
                else:
                    nn.init.zeros_(param)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.output_dim: int = hidden_size

    def initial_state(self, batch_size: int,
                      device: torch.device | str | None = None) -> State:
        """Zero ``(h, c)`` for `batch_size` rows, on `device` (default: the LSTM's)."""
        if device is None:
            device = next(self.lstm.parameters()).device
        shape = (self.num_layers, batch_size, self.hidden_size)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def forward(self, obs: torch.Tensor, state: State,
                episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """One step: `obs` ``(B, ...)``, `episode_start` ``(B,)`` bool or 0/1 ->
        features ``(B, hidden_size)`` and the new state."""
        return self._step(self.encoder(obs), state, episode_start)

    def forward_sequence(self, obs_seq: torch.Tensor, state: State,
                         episode_starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        """`obs_seq` ``(T, B, ...)`` from `state`, `episode_starts` ``(T, B)`` ->
        features ``(T, B, hidden_size)`` and the state after the last step."""
        steps, batch = obs_seq.shape[:2]
        if tuple(episode_starts.shape) != (steps, batch):
            raise ValueError(f"episode_starts must have shape (T, B) = {(steps, batch)}, got "
                             f"{tuple(episode_starts.shape)}")
        features = self.encoder(obs_seq.flatten(0, 1))
        # One nn.LSTM call over every episode segment of the batch, padded to the longest
        # and packed, instead of T single steps: an episode start cuts a row's sequence in
        # two, and the second part starts from a zero state.
        starts = (episode_starts != 0).cpu().numpy()
        first = starts.copy()
        first[0] = True
        seg_b, seg_t = np.nonzero(first.T)  # segments in env-major, time order
        seg_end = np.append(seg_t[1:], steps)
        seg_end[np.append(seg_b[1:] != seg_b[:-1], True)] = steps
        lengths = seg_end - seg_t
        offsets = np.arange(int(lengths.max()))[:, None]
        valid = offsets < lengths[None, :]  # (L, S)
        flat_index = (seg_t[None, :] + offsets) * batch + seg_b[None, :]
        device = features.device
        index = torch.as_tensor(np.where(valid, flat_index, 0), device=device)
        padded = features[index]  # (L, S, F)
        carries = torch.as_tensor(~starts[0, seg_b] & (seg_t == 0), device=device)
        rows = torch.as_tensor(seg_b, device=device)
        keep = carries.view(1, -1, 1).to(features.dtype)
        h0, c0 = state[0][:, rows] * keep, state[1][:, rows] * keep
        packed = pack_padded_sequence(padded, torch.as_tensor(lengths), enforce_sorted=False)
        out_packed, (h_n, c_n) = self.lstm(packed, (h0.contiguous(), c0.contiguous()))
        out, _ = pad_packed_sequence(out_packed)
        valid_t = torch.as_tensor(valid, device=device)
        outputs = features.new_zeros(steps * batch, self.hidden_size)
        outputs[torch.as_tensor(flat_index[valid], device=device)] = out[valid_t]
        last = torch.as_tensor(np.flatnonzero(np.append(seg_b[1:] != seg_b[:-1], True)),
                               device=device)
        return outputs.view(steps, batch, -1), (h_n[:, last], c_n[:, last])

    def _step(self, features: torch.Tensor, state: State,
              episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        start = torch.as_tensor(episode_start, device=features.device)
        if tuple(start.shape) != (features.shape[0],):
            raise ValueError(f"episode_start must have shape (B,) = ({features.shape[0]},), got "
                             f"{tuple(start.shape)}")
        reset = (start != 0).view(1, -1, 1)
        h, c = state
        out, (h, c) = self.lstm(features.unsqueeze(0),
                                (h.masked_fill(reset, 0.0), c.masked_fill(reset, 0.0)))
        return out[0], (h, c)
