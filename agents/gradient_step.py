"""One gradient step of a small network on the CPU, with torch's numbers and less of its
per-tensor overhead (`GradientStep`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class GradientStep:
    """A gradient step: the gradients of a loss, clipped to a global norm as
    `clip_grad_norm_` does, and the optimizer's update (Adam or RMSprop, one parameter
    group), with the numbers of torch's own step to the last bit.

    torch's optimizers and `clip_grad_norm_` take about a dozen small operations per
    parameter tensor, which on a small network cost more than the arithmetic. On the CPU
    the parameters are views of one flat tensor and their gradients views of another
    (backward accumulates into them), and, once torch's first step has created it, each
    kind of the optimizer's state too: RMSprop's update is then a few operations on whole
    buffers (its per-parameter arithmetic, element by element), and Adam's one call of the
    fused kernel torch's fused Adam calls (given the parameters one by one, as torch does:
    the kernel rounds a tensor's tail differently from its body). The optimizer's
    state_dict keeps its form; after ``optimizer.load_state_dict`` call `forget`, and the
    next step goes through torch's optimizer once more before the state is flattened
    again. Elsewhere (a GPU, other optimizer settings, a loss that leaves a parameter out)
    every step is torch's.

    A caller that computes the gradients itself, without autograd, hands them to `apply`
    where `takes_gradients` says so, and calls the step with the loss elsewhere."""

    def __init__(self, params: Sequence[torch.Tensor], optimizer: torch.optim.Optimizer,
                 max_grad_norm: float) -> None:
        self.params: list[torch.Tensor] = list(params)
        self.optimizer, self.max_grad_norm = optimizer, max_grad_norm
        group = optimizer.param_groups[0]
        self.flat = (len(optimizer.param_groups) == 1 and bool(params)
                     and all(p.device.type == "cpu" and p.dtype == params[0].dtype
                             and not torch.is_complex(p) for p in params)
                     and group["weight_decay"] == 0 and not group["maximize"]
                     and not group["differentiable"]
                     and ((isinstance(optimizer, torch.optim.Adam) and group["fused"]
                           and not group["amsgrad"] and not group["decoupled_weight_decay"])
                          or (isinstance(optimizer, torch.optim.RMSprop)
                              and group["momentum"] == 0 and not group["centered"])))
        if self.flat:
            self.flat_params = self._flatten(params)
            self.grad = torch.zeros_like(self.flat_params)
            self.grads = self._views(self.grad, params)
            self._grad_of = dict(zip(self.params, self.grads, strict=True))
        #: The flattened optimizer state (Adam: exp_avg, exp_avg_sq; RMSprop: square_avg)
        #: and step counters, once torch's first step has created them, and their views.
        self.state: list[torch.Tensor] | None = None
        self.counters = torch.zeros(0)
        self.state_views: list[list[torch.Tensor]] = []
        self.counter_views: list[torch.Tensor] = []

    @staticmethod
    def _views(flat: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Views of consecutive pieces of `flat`, shaped as the tensors of `like`."""
        views, offset = [], 0
        for tensor in like:
            views.append(flat[offset:offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()
        return views

    @classmethod
    def _flatten(cls, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        """One flat tensor of the tensors' values; each tensor becomes a view of it."""
        with torch.no_grad():
            flat = torch.cat([t.detach().reshape(-1) for t in tensors])
            for tensor, view in zip(tensors, cls._views(flat, tensors), strict=True):
                tensor.data = view
        return flat

    def forget(self) -> None:
        """The optimizer's state was replaced: the next step is torch's."""
        self.state = None

    @property
    def takes_gradients(self) -> bool:
        """Whether the next step can be `apply`'s: a flat one after torch's first (which
        creates the optimizer's state, and takes the loss)."""
        return self.flat and self.state is not None

    @property
    def buffers(self) -> dict[torch.Tensor, torch.Tensor] | None:
        """Per parameter, the buffer its gradient is kept in (a view of the flat one), for a
        caller that writes the gradients there itself (see `apply`); None where the step
        does not take gradients."""
        return self._grad_of if self.takes_gradients else None

    def apply(self, params: Sequence[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """The step from gradients computed without autograd, ``grads[i]`` that of
        ``params[i]``, every parameter once (where `takes_gradients`): each is copied into
        its buffer (the bits that backward leaves in a ``.grad`` that was None), unless it
        is that buffer already (a caller that wrote it there, see `buffers`), then clipped,
        then the optimizer's update."""
        if len(params) != len(self.params) or not self.takes_gradients:
            raise ValueError("GradientStep.apply takes a gradient for every parameter, after "
                             "the first step (see takes_gradients)")
        self._attach_grads()
        moved = [(self._grad_of[p], g) for p, g in zip(params, grads, strict=True)
                 if g is not self._grad_of[p]]
        if moved:
            torch._foreach_copy_([buffer for buffer, _ in moved], [grad for _, grad in moved])
        self._step()

    def _zero_grads(self) -> None:
        """The gradient buffers zeroed, and each parameter's ``.grad`` its buffer."""
        self.grad.zero_()
        self._attach_grads()

    def _attach_grads(self) -> None:
        """Each parameter's ``.grad`` its buffer."""
        for param, view in zip(self.params, self.grads, strict=True):
            if param.grad is not view:  # replaced by someone else: put back
                param.grad = view

    def _step(self) -> None:
        with torch.no_grad():
            self._clip()
            self._flat_step()

    def __call__(self, loss: torch.Tensor) -> None:
        if not self.flat:
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
            self.optimizer.step()
            return
        if self.state is None:
            self._torch_step(loss)
            return
        self._zero_grads()
        loss.backward()
        with torch.no_grad():
            now = [p.grad for p in self.params]
            if any(grad is not view for grad, view in zip(now, self.grads, strict=True)):
                # A gradient was not accumulated in place (a hook replaced it, say).
                self.grad.copy_(torch.cat([(view if grad is None else grad).reshape(-1)
                                           for grad, view in zip(now, self.grads,
                                                                 strict=True)]))
        self._step()

    def _clip(self) -> None:
        """`clip_grad_norm_`'s arithmetic: the norm of the parameters' gradient norms, and
        the gradients times ``max_norm / (norm + 1e-6)`` where that is below 1 (times 1
        elsewhere, which changes nothing).

        The norm over the flat buffer (one operation) equals that one up to the order of
        summation, whose rounding is far below 0.1%: below 99.9% of max_norm it says that
        the gradients are left as they are, without the dozen operations of the other."""
        if self.max_grad_norm <= 0:
            return
        if float(torch.linalg.vector_norm(self.grad)) < 0.999 * self.max_grad_norm:
            return
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(self.grads, 2.0)), 2.0)
        clip_coef = self.max_grad_norm / (norm + 1e-6)
        if float(clip_coef) < 1.0:
            self.grad.mul_(clip_coef)

    def _torch_step(self, loss: torch.Tensor) -> None:
        """torch's step, which creates the optimizer's state, then the state flattened.
        A loss that leaves a parameter out (no gradient, which torch's optimizers skip)
        gets torch's steps from then on."""
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        if any(g is None for g in grads):
            self.flat = False
            for param, grad in zip(self.params, grads, strict=True):
                param.grad = grad
            if self.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
            self.optimizer.step()
            return
        with torch.no_grad():
            self.grad.copy_(torch.cat([g.reshape(-1) for g in grads]))
            self._clip()
        for param, view in zip(self.params, self.grads, strict=True):
            param.grad = view
        self.optimizer.step()
        states = [self.optimizer.state[p] for p in self.params]
        keys = ("exp_avg", "exp_avg_sq") if isinstance(self.optimizer, torch.optim.Adam) else (
            "square_avg",)
        self.state = [self._flatten([state[key] for state in states]) for key in keys]
        self.counters = self._flatten([state["step"] for state in states])
        self.state_views = [[state[key] for state in states] for key in keys]
        self.counter_views = [state["step"] for state in states]

    def _flat_step(self) -> None:
        assert self.state is not None
        group, grad = self.optimizer.param_groups[0], self.grad
        self.counters.add_(1)  # every parameter's step count
        if isinstance(self.optimizer, torch.optim.Adam):
            # Per parameter, as torch does: the fused kernel's arithmetic differs by
            # rounding between the vectorized body of a tensor and its tail.
            exp_avgs, exp_avg_sqs = self.state_views
            beta1, beta2 = group["betas"]
            torch._fused_adam_(self.params, self.grads, exp_avgs, exp_avg_sqs, [],
                               self.counter_views, amsgrad=False, lr=group["lr"],
                               beta1=beta1, beta2=beta2, weight_decay=0.0, eps=group["eps"],
                               maximize=False, grad_scale=None, found_inf=None)
        else:  # RMSprop, as torch's _single_tensor_rmsprop
            (square_avg,) = self.state
            alpha = group["alpha"]
            square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
            avg = square_avg.sqrt().add_(group["eps"])
            self.flat_params.addcdiv_(grad, avg, value=-group["lr"])
