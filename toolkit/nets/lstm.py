"""A recurrent core over any encoder, with the hidden state reset at episode starts."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

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
    rollout as sequences). `step` is a faster `forward` for acting in a loop, and
    `sequence_outputs` the features of `forward_sequence` without the final state, for
    training. ``ortho_init=True`` uses orthogonal LSTM weights and zero biases, as CleanRL's
    recurrent PPO does.
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
        return self._step(self.encoder(obs), state, episode_start, cell=False)

    def step(self, obs: torch.Tensor, state: State,
             episode_start: torch.Tensor) -> tuple[torch.Tensor, State]:
        """`forward` with the LSTM stepped by ``torch.lstm_cell`` rather than by the
        `nn.LSTM` module: the arithmetic of nn.LSTM's native CPU kernel, which for one step
        of a small batch costs a fraction of the oneDNN kernel nn.LSTM picks on the CPU
        (the results agree to rounding); module hooks do not see it. For acting in a loop."""
        return self._step(self.encoder(obs), state, episode_start, cell=True)

    def forward_sequence(self, obs_seq: torch.Tensor, state: State,
                         episode_starts: torch.Tensor) -> tuple[torch.Tensor, State]:
        """`obs_seq` ``(T, B, ...)`` from `state`, `episode_starts` ``(T, B)`` ->
        features ``(T, B, hidden_size)`` and the state after the last step."""
        return self._sequence(obs_seq, state, episode_starts, final_state=True)

    def sequence_outputs(self, obs_seq: torch.Tensor, state: State,
                         episode_starts: torch.Tensor) -> torch.Tensor:
        """The features of `forward_sequence` without the final state, which can take a
        second LSTM call (see `_sequence`): what training on whole sequences needs."""
        return self._sequence(obs_seq, state, episode_starts, final_state=False)[0]

    def _sequence(self, obs_seq: torch.Tensor, state: State, episode_starts: torch.Tensor,
                  final_state: bool) -> tuple[torch.Tensor, State]:
        steps, batch = obs_seq.shape[:2]
        if tuple(episode_starts.shape) != (steps, batch):
            raise ValueError(f"episode_starts must have shape (T, B) = {(steps, batch)}, got "
                             f"{tuple(episode_starts.shape)}")
        features = self.encoder(obs_seq.flatten(0, 1))
        # One nn.LSTM call over every episode segment of the batch, each in a column of a
        # (L, S) batch padded to the longest, instead of T single steps: an episode start
        # cuts a row's sequence in two, and the second part starts from a zero state. The
        # padding after a short segment is computed and dropped: an LSTM's output at a
        # step depends on the steps before it only, and an unpacked batch takes the fast
        # path of nn.LSTM on the CPU (oneDNN), several times faster than a packed one.
        starts = (episode_starts != 0).cpu().numpy()
        first = starts.copy()
        first[0] = True
        seg_b, seg_t = np.nonzero(first.T)  # segments in env-major, time order
        last = np.append(seg_b[1:] != seg_b[:-1], True)  # the last segment of each row
        seg_end = np.append(seg_t[1:], steps)
        seg_end[last] = steps
        lengths = seg_end - seg_t
        longest = int(lengths.max())
        offsets = np.arange(longest)[:, None]
        valid = offsets < lengths[None, :]  # (L, S)
        flat_index = (seg_t[None, :] + offsets) * batch + seg_b[None, :]
        device = features.device
        padded = features[torch.as_tensor(np.where(valid, flat_index, 0), device=device)]
        carries = torch.as_tensor(~starts[0, seg_b] & (seg_t == 0), device=device)
        rows = torch.as_tensor(seg_b, device=device)
        keep = carries.view(1, -1, 1).to(features.dtype)
        h0, c0 = state[0][:, rows] * keep, state[1][:, rows] * keep
        out, (h_n, c_n) = self.lstm(padded, (h0.contiguous(), c0.contiguous()))
        # Step (t, b) of the sequence is step t - seg_t[s] of its segment s.
        position = np.empty(steps * batch, dtype=np.int64)
        position[flat_index[valid]] = (offsets * len(seg_b) + np.arange(len(seg_b)))[valid]
        outputs = out.flatten(0, 1)[torch.as_tensor(position, device=device)]
        if not final_state:
            return outputs.view(steps, batch, -1), (h_n, c_n)
        # The state after each row's last segment: the padded call's where that segment is
        # the longest, else that of a packed call over the shorter ones (which all start
        # from a zero state, at an episode start).
        last_segments = np.flatnonzero(last)
        h_last, c_last = h_n[:, last_segments], c_n[:, last_segments]
        short = np.flatnonzero(lengths[last_segments] < longest)
        if len(short):
            columns = torch.as_tensor(last_segments[short], device=device)
            packed = pack_padded_sequence(padded[:, columns],
                                          torch.as_tensor(lengths[last_segments[short]]),
                                          enforce_sorted=False)
            zeros = h_n.new_zeros(self.num_layers, len(short), self.hidden_size)
            _, (h_short, c_short) = self.lstm(packed, (zeros, zeros))
            at = torch.as_tensor(short, device=device)
            h_last = h_last.index_copy(1, at, h_short)
            c_last = c_last.index_copy(1, at, c_short)
        return outputs.view(steps, batch, -1), (h_last, c_last)

    def _step(self, features: torch.Tensor, state: State, episode_start: torch.Tensor,
              cell: bool) -> tuple[torch.Tensor, State]:
        start = torch.as_tensor(episode_start, device=features.device)
        if tuple(start.shape) != (features.shape[0],):
            raise ValueError(f"episode_start must have shape (B,) = ({features.shape[0]},), got "
                             f"{tuple(start.shape)}")
        reset = (start != 0).view(1, -1, 1)
        h, c = state
        h, c = h.masked_fill(reset, 0.0), c.masked_fill(reset, 0.0)
        if not cell:
            out, (h, c) = self.lstm(features.unsqueeze(0), (h, c))
            return out[0], (h, c)
        x, hs, cs, lstm = features, [], [], self.lstm
        for layer in range(self.num_layers):
            x, c_layer = torch.lstm_cell(
                x, (h[layer], c[layer]), getattr(lstm, f"weight_ih_l{layer}"),
                getattr(lstm, f"weight_hh_l{layer}"), getattr(lstm, f"bias_ih_l{layer}"),
                getattr(lstm, f"bias_hh_l{layer}"))
            hs.append(x)
            cs.append(c_layer)
        if self.num_layers == 1:
            return x, (x.unsqueeze(0), cs[0].unsqueeze(0))
        return x, (torch.stack(hs), torch.stack(cs))
