"""A Keras-style model summary: one row per layer with its output shape and parameters.

    >>> from rich.console import Console
    >>> Console().print(summary_table(summary(model, torch.zeros(1, 4))))

`summary` runs one forward pass with hooks on every module to record output shapes. For a
module whose forward takes extra arguments, pass them after the input; to summarise another
method, pass it as `forward` (``summary(rnn, obs_seq, state, starts,
forward=rnn.forward_sequence)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import torch
from rich.table import Table
from torch import nn

#: A tensor's shape, a list of those for a tuple of outputs (nested as the outputs are),
#: or None for a module that did not run or returned something else.
ShapeTree: TypeAlias = "tuple[int, ...] | list[ShapeTree] | None"


@dataclass(frozen=True)
class SummaryRow:
    """One module: a leaf, or a container that holds parameters of its own."""

    name: str
    type: str
    #: Of the module's first call.
    output_shape: ShapeTree
    #: Parameters held by this module itself (a parameter shared with an earlier row counts
    #: there only), so the rows add up to the total.
    params: int
    trainable: int
    #: How many times the module ran in the forward pass (an LSTM stepped T times: T).
    calls: int


@dataclass(frozen=True)
class ModelSummary:
    """Rows in module registration order, and the model's parameter counts."""

    rows: list[SummaryRow]
    total_params: int
    trainable_params: int

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params


def _shape_tree(output: Any) -> ShapeTree:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, Mapping):
        return [_shape_tree(value) for value in output.values()]
    if isinstance(output, Sequence) and not isinstance(output, str):
        return [_shape_tree(item) for item in output]
    return None


def summary(model: nn.Module, *args: Any, forward: Callable[..., Any] | None = None,
            **kwargs: Any) -> ModelSummary:
    """Run ``forward(*args, **kwargs)`` (default: `model`) once and describe `model`'s layers.

    The pass runs under ``torch.no_grad()`` with the model in eval mode (so dropout draws no
    random numbers and batch norm keeps its statistics); training flags are restored and
    the hooks removed afterwards, also when the forward pass raises.
    """
    modules = [(name, module) for name, module in model.named_modules()
               if not any(True for _ in module.children())
               or any(True for _ in module.parameters(recurse=False))]
    shapes: dict[str, ShapeTree] = {}
    calls: dict[str, int] = {}

    def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                shapes[name] = _shape_tree(output)
        return hook

    training = {module: module.training for module in model.modules()}
    handles = [module.register_forward_hook(recorder(name)) for name, module in modules]
    try:
        model.eval()
        with torch.no_grad():
            (forward or model)(*args, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training.items():
            module.training = flag

    rows = []
    seen: set[int] = set()
    for name, module in modules:
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        rows.append(SummaryRow(
            name=name or "(model)", type=type(module).__name__,
            output_shape=shapes.get(name), params=sum(p.numel() for p in own),
            trainable=sum(p.numel() for p in own if p.requires_grad), calls=calls.get(name, 0)))
    params = list(model.parameters())
    return ModelSummary(rows, total_params=sum(p.numel() for p in params),
                        trainable_params=sum(p.numel() for p in params if p.requires_grad))


def format_shape(shape: ShapeTree) -> str:
    """``(2, 64)`` for a tensor, ``[(1, 2, 8), [(1, 2, 8), (1, 2, 8)]]`` for nested outputs."""
    if shape is None:
        return "-"
    if isinstance(shape, tuple):
        return "(" + ", ".join(str(size) for size in shape) + ")"
    return "[" + ", ".join(format_shape(item) for item in shape) + "]"


def summary_table(model_summary: ModelSummary, title: str | None = None) -> Table:
    """A rich Table of the rows, then total, trainable and non-trainable parameters."""
    show_calls = any(row.calls > 1 for row in model_summary.rows)
    table = Table(title=title)
    table.add_column("Layer")
    table.add_column("Type")
    table.add_column("Output shape")
    if show_calls:
        table.add_column("Calls", justify="right")
    table.add_column("Param #", justify="right")
    for row in model_summary.rows:
        cells = [row.name, row.type, format_shape(row.output_shape)]
        if show_calls:
            cells.append(str(row.calls))
        table.add_row(*cells, f"{row.params:,}")
    table.add_section()
    padding = [""] * (2 if show_calls else 1)
    for label, count in (("Total params", model_summary.total_params),
                         ("Trainable params", model_summary.trainable_params),
                         ("Non-trainable params", model_summary.non_trainable_params)):
        table.add_row(label, "", *padding, f"{count:,}")
    return table
