"""A restricted Boltzmann machine: energy, free energy, conditionals, Gibbs sampling and the
contrastive-divergence gradient, batched over samples and units with tensor ops.

Binary visibles v in {0, 1}^V and binary hiddens h in {0, 1}^H, weights W (V x H), visible
biases b, hidden biases c (Bernoulli-Bernoulli):

    E(v, h) = -b.v - c.h - v^T W h
    F(v)    = -log sum_h exp(-E(v, h)) = -b.v - sum_j softplus(c_j + v.W[:, j])
    p(h_j = 1 | v) = sigmoid(c_j + v.W[:, j]),   p(v_i = 1 | h) = sigmoid(b_i + W[i].h)

Gaussian visibles of unit variance (Gaussian-Bernoulli, for standardized real data):

    E(v, h) = |v - b|^2 / 2 - c.h - v^T W h
    F(v)    = |v - b|^2 / 2 - sum_j softplus(c_j + v.W[:, j])
    p(v | h) = N(b + W h, I),   p(h_j = 1 | v) as above

and p(v) = exp(-F(v)) / Z in both cases. The gradient of the log-likelihood is the data's
statistics minus the model's: d log p(v) / dW = v p(h|v)^T - E_model[v p(h|v)^T] (likewise
v for b and p(h|v) for c); `contrastive_divergence` estimates the model's term with a short
Gibbs chain (CD-k, Hinton 2002) or a persistent one (PCD-k, Tieleman 2008).

Every random draw takes a `torch.Generator` on the tensors' device, so that a trainer owns
its randomness and a checkpoint can hold it. `RBM` is a plain building block: a deep belief
net stacks them, feeding one's hidden probabilities to the next as its visibles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

#: The guide's initial weights: N(0, 0.01^2).
INIT_WEIGHT_STD = 0.01


class RBM(nn.Module):
    """`visible` x `hidden` units; ``gaussian`` makes the visibles unit-variance Gaussians.

    The parameters are `nn.Parameter` s so that `state_dict`, `.to(device)` and
    `torch.optim` work, but no autograd graph is built: `contrastive_divergence` computes
    the gradient estimate itself."""

    def __init__(self, visible: int, hidden: int, *, gaussian: bool = False,
                 generator: torch.Generator | None = None,
                 visible_bias: torch.Tensor | None = None) -> None:
        super().__init__()
        if visible < 1 or hidden < 1:
            raise ValueError(f"an RBM needs at least one visible and one hidden unit, got "
                             f"{visible} and {hidden}")
        self.visible, self.hidden, self.gaussian = visible, hidden, gaussian
        weight = torch.randn(visible, hidden, generator=generator) * INIT_WEIGHT_STD
        #: W, shape (visible, hidden).
        self.weight = nn.Parameter(weight, requires_grad=False)
        bias = torch.zeros(visible) if visible_bias is None else visible_bias.detach().clone()
        #: b, shape (visible,).
        self.visible_bias = nn.Parameter(bias.float(), requires_grad=False)
        #: c, shape (hidden,).
        self.hidden_bias = nn.Parameter(torch.zeros(hidden), requires_grad=False)

    # -- energies ----------------------------------------------------------------------

    def hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        """c + v W, the hiddens' total inputs, (B, H)."""
        return torch.addmm(self.hidden_bias, v, self.weight)

    def visible_input(self, h: torch.Tensor) -> torch.Tensor:
        """b + h W^T, the visibles' total inputs, (B, V)."""
        return torch.addmm(self.visible_bias, h, self.weight.t())

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) per row, (B,): -b.v (Bernoulli) or |v - b|^2 / 2 (Gaussian), minus
        sum_j softplus(c_j + v.W[:, j])."""
        hidden_term = F.softplus(self.hidden_input(v)).sum(1)
        if self.gaussian:
            return 0.5 * (v - self.visible_bias).pow(2).sum(1) - hidden_term
        return -(v @ self.visible_bias) - hidden_term

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h) per row, (B,)."""
        visible_term = (0.5 * (v - self.visible_bias).pow(2).sum(1) if self.gaussian
                        else -(v @ self.visible_bias))
        return visible_term - h @ self.hidden_bias - ((v @ self.weight) * h).sum(1)

    # -- conditionals and sampling -----------------------------------------------------

    def hidden_probabilities(self, v: torch.Tensor) -> torch.Tensor:
        """p(h_j = 1 | v) = sigmoid(c_j + v.W[:, j]), (B, H)."""
        return self.hidden_input(v).sigmoid_()

    def visible_mean(self, h: torch.Tensor) -> torch.Tensor:
        """E[v | h]: sigmoid(b + W h) for Bernoulli visibles, b + W h for Gaussian ones."""
        total = self.visible_input(h)
        return total if self.gaussian else total.sigmoid_()

    def sample_hidden(self, v: torch.Tensor, generator: torch.Generator | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """(p(h = 1 | v), a binary draw from it)."""
        probabilities = self.hidden_probabilities(v)
        return probabilities, bernoulli(probabilities, generator)

    def sample_visible(self, h: torch.Tensor, generator: torch.Generator | None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E[v | h], a draw from p(v | h)): Bernoulli, or the mean plus N(0, 1) noise."""
        mean = self.visible_mean(h)
        return mean, self.draw_visible(mean, generator)

    def draw_visible(self, mean: torch.Tensor, generator: torch.Generator | None
                     ) -> torch.Tensor:
        """A draw from p(v | h) given its mean E[v | h]."""
        if self.gaussian:
            return mean + torch.randn(mean.shape, generator=generator, device=mean.device,
                                      dtype=mean.dtype)
        return bernoulli(mean, generator)

    def gibbs(self, v: torch.Tensor, steps: int, generator: torch.Generator | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """`steps` rounds of block Gibbs sampling v -> h -> v from `v`; returns the last
        visible draw and its mean E[v | h]."""
        mean = v
        for _ in range(steps):
            _, h = self.sample_hidden(v, generator)
            mean, v = self.sample_visible(h, generator)
        return v, mean

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """p(h | v): what a layer above sees (and what ``--summary`` shows)."""
        return self.hidden_probabilities(v)

    def extra_repr(self) -> str:
        kind = "gaussian" if self.gaussian else "bernoulli"
        return f"visible={self.visible}, hidden={self.hidden}, visibles={kind}"


def bernoulli(p: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Binary draws, 1 with probability `p`, as uniform draws below `p` (two to three times
    faster than `torch.bernoulli` on the CPU, where the chains' draws are much of the work),
    compared in place: the uniform draws' tensor becomes the 0/1 draws."""
    return torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype).lt_(p)


def data_visible_bias(x: torch.Tensor, clip: float = 1e-3) -> torch.Tensor:
    """log(p_i / (1 - p_i)) with p_i the fraction of training vectors where unit i is on
    (clipped to [clip, 1 - clip], so that a pixel never on gets a finite bias): the guide's
    initial visible biases, and the base-rate model of annealed importance sampling."""
    p = x.flatten(1).float().mean(0).clamp(clip, 1.0 - clip)
    return torch.log(p) - torch.log1p(-p)


@dataclass
class CDEstimate:
    """One contrastive-divergence step's result.

    `gradient` holds estimates of d(mean log p(v))/d(parameter) (an ascent direction), by
    parameter name. `chain` holds the negative phase's visible states: with
    `chain_hidden`, a draw from p(h | chain), the persistent chain's next state.
    `reconstruction` is E[v | h0] for the data under CD-k (PCD-k draws no h0 and leaves it
    None), `hidden` p(h | v0)."""

    gradient: dict[str, torch.Tensor]
    chain: torch.Tensor
    reconstruction: torch.Tensor | None
    hidden: torch.Tensor
    chain_hidden: torch.Tensor | None = None


def contrastive_divergence(rbm: RBM, v0: torch.Tensor, k: int, generator: torch.Generator | None,
                           chain: torch.Tensor | None = None, *,
                           chain_hidden: torch.Tensor | None = None,
                           mask: torch.Tensor | None = None) -> CDEstimate:
    """The CD-k (``chain`` None) or PCD-k gradient estimate for the batch `v0` (B, V).

    Following the recipe of Hinton's practical guide (2010, section 3.4): "when the hidden
    units are being driven by data, always use stochastic binary states" (a draw
    h0 ~ p(h | v0) drives the chain), "when they are being driven by reconstructions, always
    use probabilities", and the statistics use probabilities, not binary states (the
    positive ones p0 = p(h | v0)). CD-k runs k steps h -> v -> h from h0, drawing every state
    but the last visible one, which is E[v | h], the probabilities (section 3.2); PCD-k runs
    k steps v -> h -> v from the persistent `chain` (its own batch of fantasy particles) and
    keeps the draws, as a Markov chain must. The negative statistics use the last visible
    state vk and pk = p(h | vk). PCD's chain state is (v, h): the draw h ~ p(h | vk) that
    the next update's first step starts from is returned as `chain_hidden` and taken back
    as `chain_hidden`, as scikit-learn's BernoulliRBM keeps `h_samples_`, so an update of
    PCD-1 takes five matrix products, not six (without it, h is drawn from `chain`). With
    batch means over the B data rows and the M chain rows,

        dW = v0^T p0 / B - vk^T pk / M,   db = mean(v0) - mean(vk),   dc = mean(p0) - mean(pk),

    which is also the Gaussian-visible gradient (d(-F)/db = v - b, and b cancels).

    With a `mask` m (B, V) of 1 where row n's unit i is observed and 0 where it is missing
    (a movie the user did not rate; CD-k only), each row is an RBM over its observed units
    alone, sharing the weights (Salakhutdinov, Mnih & Hinton, 2007): the hiddens are driven
    by the observed units only, p0 = p(h | m * v0) and every later p(h | m * v), and both
    phases' visible statistics are masked, m * v0 and m * vk, so that

        dW = (m * v0)^T p0 / B - (m * vk)^T pk / B,   db = mean(m * v0) - mean(m * vk):

    a missing unit's row of W and its bias get nothing from that user. `v0` must be 0 (not
    NaN) where m is 0. The chain's masked states are returned as `chain`."""
    if k < 1:
        raise ValueError(f"contrastive divergence needs k >= 1 Gibbs steps, got {k}")
    if mask is not None:
        if chain is not None:
            raise ValueError("a mask belongs to the data's rows; persistent chains have none")
        v0 = v0 * mask
    if chain is not None:
        return _persistent(rbm, v0, k, generator, chain, chain_hidden)
    p0, h0 = rbm.sample_hidden(v0, generator)
    reconstruction = rbm.visible_mean(h0)
    h = h0
    for step in range(k):
        mean = reconstruction if step == 0 else rbm.visible_mean(h)
        if step == k - 1:
            vk = mean if mask is None else mean * mask
        else:
            vk = rbm.draw_visible(mean, generator)
            if mask is not None:
                vk = vk * mask
            _, h = rbm.sample_hidden(vk, generator)
    pk = rbm.hidden_probabilities(vk)
    return CDEstimate(_gradient(v0, p0, vk, pk), vk, reconstruction, p0)


def _persistent(rbm: RBM, v0: torch.Tensor, k: int, generator: torch.Generator | None,
                chain: torch.Tensor, chain_hidden: torch.Tensor | None) -> CDEstimate:
    """PCD-k from the chain state (`chain`, `chain_hidden`); see `contrastive_divergence`."""
    p0 = rbm.hidden_probabilities(v0)
    h = chain_hidden if chain_hidden is not None else rbm.sample_hidden(chain, generator)[1]
    for step in range(k):
        _, vk = rbm.sample_visible(h, generator)
        if step < k - 1:
            _, h = rbm.sample_hidden(vk, generator)
    pk = rbm.hidden_probabilities(vk)
    return CDEstimate(_gradient(v0, p0, vk, pk), vk, None, p0, bernoulli(pk, generator))


def _gradient(v0: torch.Tensor, p0: torch.Tensor, vk: torch.Tensor, pk: torch.Tensor
              ) -> dict[str, torch.Tensor]:
    # dW as one product and one accumulating product that scales and subtracts (beta,
    # alpha): two divisions and a difference would be three more passes over a (V, H) matrix.
    weight = torch.mm(vk.t(), pk).addmm_(v0.t(), p0, beta=-1.0 / len(vk), alpha=1.0 / len(v0))
    return {
        "weight": weight,
        "visible_bias": v0.mean(0) - vk.mean(0),
        "hidden_bias": p0.mean(0) - pk.mean(0),
    }


def sparsity_gradient(v0: torch.Tensor, q: torch.Tensor, target: float, cost: float
                      ) -> dict[str, torch.Tensor]:
    """The guide's sparsity penalty (section 11) as an ascent direction: `q` is the decaying
    average of each hidden unit's probability of being on, and the cross-entropy penalty
    cost * (-p log q - (1 - p) log(1 - q)) has the derivative cost * (q_j - p) with respect
    to unit j's total input; it moves the hidden bias and the unit's incoming weights (by
    the mean visible state) down when q_j > p and up when q_j < p."""
    push = cost * (q - target)
    return {"weight": -torch.outer(v0.mean(0), push), "hidden_bias": -push}


def pseudo_log_likelihood(rbm: RBM, v: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """scikit-learn's `BernoulliRBM.score_samples`, per row: flip bit `flip[n]` of row n to
    get v~, and return V * log sigmoid(F(v~) - F(v)), V times the log-probability of that
    bit given the others, an estimate of the pseudo-log-likelihood sum_i log p(v_i | v_-i).
    Binary visibles only."""
    if rbm.gaussian:
        raise ValueError("the pseudo-log-likelihood flips bits: it needs binary visibles")
    rows = torch.arange(len(v), device=v.device)
    flipped = v.clone()
    flipped[rows, flip] = 1.0 - flipped[rows, flip]
    return rbm.visible * F.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v))


def full_pseudo_log_likelihood(rbm: RBM, v: torch.Tensor, elements: int = 1 << 22
                               ) -> torch.Tensor:
    """The pseudo-log-likelihood sum_i log p(v_i | v_-i) per row, exactly: every pixel
    flipped in turn (the expectation of `pseudo_log_likelihood` over the flipped pixel).
    Flipping pixel i by d_i = 1 - 2 v_i moves the hiddens' inputs a = c + v W by d_i W[i], so

        F(v~i) - F(v) = -d_i b_i - sum_j (softplus(a_j + d_i W[i, j]) - softplus(a_j)),

    computed for all i at once, rows in chunks of about `elements` / (V H). Binary
    visibles only."""
    if rbm.gaussian:
        raise ValueError("the pseudo-log-likelihood flips bits: it needs binary visibles")
    rows = max(1, elements // (rbm.visible * rbm.hidden))
    parts = []
    for chunk in v.split(rows):
        total = rbm.hidden_input(chunk)  # (B, H)
        flip = 1.0 - 2.0 * chunk  # (B, V)
        moved = total[:, None, :] + flip[:, :, None] * rbm.weight  # (B, V, H)
        gap = -flip * rbm.visible_bias - (F.softplus(moved)
                                          - F.softplus(total)[:, None, :]).sum(2)
        parts.append(F.logsigmoid(gap).sum(1))
    return torch.cat(parts)


def gaussian_log_normalizer(visible: int) -> float:
    """log of the integral of exp(-|v|^2 / 2) over R^V: (V / 2) log(2 pi)."""
    return 0.5 * visible * math.log(2 * math.pi)
