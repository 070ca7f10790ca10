"""The partition function Z of an RBM: exact by enumeration for small models, and estimated
by annealed importance sampling (AIS) as Salakhutdinov & Murray (2008) do.

Exact: for binary visibles, summing out the visibles of exp(-E(v, h)) gives

    Z = sum_h exp(c.h) prod_i (1 + exp(b_i + W[i].h)),

and summing out the hiddens Z = sum_v exp(-F(v)); `exact_log_partition` enumerates the
smaller of the two sets (2^min(V, H) terms). For Gaussian visibles of unit variance the
integral over v is Gaussian,

    Z = (2 pi)^(V/2) sum_h exp(c.h + b.W h + |W h|^2 / 2).

AIS anneals from a base model A with a known Z_A to the RBM B through the distributions

    p_beta(v) ~ f_beta(v) = exp((1 - beta) b_A.v + beta b.v)
                            * prod_j (1 + exp(beta (c_j + v.W[:, j])))

(Gaussian visibles: exp(-|v - b|^2 / 2) in place of the first factor, A sharing it), at
betas 0 = beta_0 < beta_1 < ... < beta_{M-1} = 1. Model A (beta = 0) is the base-rate model:
independent visibles with biases b_A (the data's log-odds) and H hidden units that are on
with probability 1/2, so Z_A = prod_i (1 + exp(b_A,i)) 2^H. Each of the R runs draws
v_1 ~ p_0 and accumulates

    log w = sum_{k=1}^{M-1} log f_{beta_k}(v_k) - log f_{beta_{k-1}}(v_k),

where v_{k+1} comes from v_k by one Gibbs step that leaves p_{beta_k} invariant
(h ~ sigmoid(beta (c + v W)), then v ~ sigmoid((1 - beta) b_A + beta (b + W h))). E[w] is
exactly Z_B / Z_A, so log Z_B ~ log Z_A + log mean_r w_r (which, by Jensen, underestimates
log Z_B on average, and so overestimates log-likelihoods). The interval is Salakhutdinov's:
log(mean(w) +- 3 std(w) / sqrt(R)) + log Z_A, its lower end -inf when the spread exceeds
the mean. The runs are batched: one tensor op per step for all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from generative.rbm_model import RBM, bernoulli, gaussian_log_normalizer
from toolkit import progress

#: Enumerating 2^n configurations costs memory and time; beyond this n, use AIS.
MAX_ENUMERATED_UNITS = 24
#: AIS steps between two updates of its progress.
AIS_PROGRESS_EVERY = 100
#: Configurations scored per batch while enumerating.
ENUMERATION_CHUNK = 1 << 16


@dataclass(frozen=True)
class AISEstimate:
    """An AIS estimate of log Z: the estimate, its interval, the base model's log Z_A and
    the runs' log importance weights."""

    log_z: float
    log_z_low: float
    log_z_high: float
    log_z_base: float
    log_weights: torch.Tensor


def linear_betas(count: int) -> torch.Tensor:
    """`count` inverse temperatures from 0 to 1 inclusive, evenly spaced (float64)."""
    if count < 2:
        raise ValueError(f"AIS needs at least 2 betas (0 and 1), got {count}")
    return torch.linspace(0.0, 1.0, count, dtype=torch.float64)


def base_log_partition(rbm: RBM, base_bias: torch.Tensor | None) -> float:
    """log Z_A of the base-rate model: sum_i softplus(b_A,i) + H log 2 (binary visibles),
    or (V / 2) log(2 pi) + H log 2 (Gaussian visibles)."""
    hidden = rbm.hidden * math.log(2.0)
    if rbm.gaussian:
        return gaussian_log_normalizer(rbm.visible) + hidden
    if base_bias is None:
        raise ValueError("binary visibles need the base-rate model's visible biases")
    return float(F.softplus(base_bias.double()).sum()) + hidden


def log_mean_exp(x: torch.Tensor) -> float:
    """log(mean(exp(x))) without overflow."""
    return float(torch.logsumexp(x, 0)) - math.log(len(x))


def interval(log_weights: torch.Tensor, width: float = 3.0) -> tuple[float, float]:
    """log(mean(w) -+ width * std(w) / sqrt(R)) from the runs' log weights log w; the lower
    end is -inf where the spread exceeds the mean."""
    runs = len(log_weights)
    shift = float(log_weights.max())
    scaled = (log_weights - shift).exp()
    mean = float(scaled.mean())
    spread = width * float(scaled.std()) / math.sqrt(runs) if runs > 1 else 0.0
    low = math.log(mean - spread) + shift if mean > spread else -math.inf
    return low, math.log(mean + spread) + shift


@torch.no_grad()
def ais_log_partition(rbm: RBM, runs: int, betas: torch.Tensor,
                      generator: torch.Generator | None,
                      base_bias: torch.Tensor | None = None) -> AISEstimate:
    """Estimate log Z of `rbm` with `runs` AIS runs over `betas` (from 0 to 1, e.g.
    `linear_betas`), from the base-rate model with visible biases `base_bias` (binary
    visibles; Gaussian ones need none). Computed in float64 on the RBM's device; `generator`
    lives there too."""
    if runs < 1:
        raise ValueError(f"AIS needs at least one run, got {runs}")
    if len(betas) < 2 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0:
        raise ValueError("the betas must run from 0 to 1")
    device = rbm.weight.device
    weight = rbm.weight.double()
    b, c = rbm.visible_bias.double(), rbm.hidden_bias.double()
    log_z_base = base_log_partition(rbm, base_bias)
    if rbm.gaussian:
        v = b + torch.randn((runs, rbm.visible), generator=generator, device=device,
                            dtype=torch.float64)
        bias_gap = None
    else:
        assert base_bias is not None  # base_log_partition checked it
        base = base_bias.to(device=device, dtype=torch.float64)
        v = bernoulli(torch.sigmoid(base).expand(runs, -1), generator)
        bias_gap = b - base
    log_w = torch.zeros(runs, dtype=torch.float64, device=device)
    schedule = betas.tolist()
    with progress.task("AIS", len(schedule) - 1, "betas") as bar:
        for k in range(1, len(schedule)):
            if k % AIS_PROGRESS_EVERY == 0:
                bar.update(k)
            previous, beta = schedule[k - 1], schedule[k]
            total = torch.addmm(c, v, weight)  # c + v W, (R, H)
            # log f_beta(v) - log f_previous(v); Gaussian visibles share their quadratic term.
            log_w += (F.softplus(beta * total) - F.softplus(previous * total)).sum(1)
            if bias_gap is not None:
                log_w += (beta - previous) * (v @ bias_gap)
            if k < len(schedule) - 1:  # a Gibbs step that leaves p_beta invariant
                h = bernoulli(torch.sigmoid(beta * total), generator)
                visible_total = beta * torch.addmm(b, h, weight.t())
                if bias_gap is None:
                    v = visible_total + (1.0 - beta) * b + torch.randn(
                        v.shape, generator=generator, device=device, dtype=torch.float64)
                else:
                    v = bernoulli(torch.sigmoid(visible_total + (1.0 - beta) * base), generator)
        bar.update(len(schedule) - 1)
    low, high = interval(log_w)
    return AISEstimate(log_z=log_z_base + log_mean_exp(log_w), log_z_low=log_z_base + low,
                       log_z_high=log_z_base + high, log_z_base=log_z_base,
                       log_weights=log_w.cpu())


def configurations(n: int, device: torch.device | str = "cpu", start: int = 0,
                   stop: int | None = None) -> torch.Tensor:
    """The binary vectors of n units numbered start ... stop - 1 (all 2^n by default), one a
    row, float64; bit i of the number is unit i."""
    numbers = torch.arange(start, 2**n if stop is None else stop, device=device)
    return ((numbers[:, None] >> torch.arange(n, device=device)) & 1).double()


def exact_log_partition(rbm: RBM) -> torch.Tensor:
    """log Z by enumeration (float64, differentiable in the parameters): over the hidden
    configurations, or over the visible ones when there are fewer of those (binary
    visibles). Raises ValueError beyond 2^24 terms."""
    over_visible = not rbm.gaussian and rbm.visible < rbm.hidden
    n = rbm.visible if over_visible else rbm.hidden
    if n > MAX_ENUMERATED_UNITS:
        raise ValueError(f"enumerating 2^{n} configurations is too much; estimate log Z "
                         "with ais_log_partition")
    weight = rbm.weight.double()
    b, c = rbm.visible_bias.double(), rbm.hidden_bias.double()
    device = weight.device
    terms = []
    for start in range(0, 2**n, ENUMERATION_CHUNK):
        states = configurations(n, device, start, min(2**n, start + ENUMERATION_CHUNK))
        if over_visible:  # -F(v) = b.v + sum_j softplus(c_j + v.W[:, j])
            terms.append(states @ b + F.softplus(c + states @ weight).sum(1))
        elif rbm.gaussian:  # c.h + b.W h + |W h|^2 / 2
            top_down = states @ weight.t()  # (W h)^T, one row per h
            terms.append(states @ c + top_down @ b + 0.5 * top_down.pow(2).sum(1))
        else:  # c.h + sum_i softplus(b_i + W[i].h)
            terms.append(states @ c + F.softplus(b + states @ weight.t()).sum(1))
    log_z = torch.logsumexp(torch.cat(terms), 0)
    if rbm.gaussian:
        log_z = log_z + gaussian_log_normalizer(rbm.visible)
    return log_z


def exact_log_likelihood(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """log p(v) = -F(v) - log Z per row, exactly (small models), float64."""
    return -rbm.free_energy(v.to(rbm.weight.dtype)).double() - exact_log_partition(rbm)
