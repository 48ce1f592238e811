"""Pairwise contrastive losses: symmetric InfoNCE and the SigLIP sigmoid loss (dense and chunked).

Conventions: ``x`` (N, D) and ``y`` (M, D) are L2-normalised embeddings; ``logit_scale`` is
the log of the inverse temperature t (logits = exp(logit_scale) * x @ y.T + bias).
Positives are given by integer group ids: x_i and y_j are a positive pair when
``row_ids[i] == col_ids[j]``. With ``row_ids = col_ids = arange(N)`` this is the usual
diagonal; with instruction ids it implements false-negative handling: two samples of the same
instruction are positives, not negatives (robot data repeats instructions constantly).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def positive_mask(row_ids: Tensor, col_ids: Tensor) -> Tensor:
    """(N,), (M,) -> (N, M) bool: True where the pair is a positive."""
    return row_ids[:, None] == col_ids[None, :]


def resolve_ids(x: Tensor, y: Tensor, row_ids: Tensor | None, col_ids: Tensor | None) -> tuple[Tensor, Tensor]:
    """Group ids for rows and columns; missing ones default to the diagonal (0..N-1, 0..M-1)."""
    rows = row_ids if row_ids is not None else torch.arange(x.shape[0], device=x.device)
    cols = col_ids if col_ids is not None else torch.arange(y.shape[0], device=x.device)
    return rows, cols


def _at_least_fp32(t: Tensor) -> Tensor:
    """bf16/fp16 logits are upcast for the softmax; fp32/fp64 are kept."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def multi_positive_ce(logits: Tensor, pos: Tensor, neg: Tensor | None = None) -> Tensor:
    """Cross-entropy in which every positive competes only against the negatives, never against
    the row's other positives: for row i and positive p,
    -log(exp(l_ip) / (exp(l_ip) + sum_{n in neg(i)} exp(l_in))), averaged over p, then over rows.
    With one positive per row and all other columns negative this is the usual cross-entropy.

    logits, pos: (N, M); neg: (N, M) bool candidates to compete against (default: ~pos).
    Rows without a positive are skipped.
    """
    logits = _at_least_fp32(logits)
    if neg is None:
        neg = ~pos
    neg_lse = torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1, keepdim=True)  # (N, 1)
    per_pair = torch.logaddexp(logits, neg_lse) - logits  # (N, M): -log p(positive vs negatives)
    counts = pos.sum(dim=1)
    per_row = per_pair.masked_fill(~pos, 0.0).sum(dim=1) / counts.clamp(min=1)  # (N,)
    return per_row[counts > 0].mean()


def info_nce_directional(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor,
    row_ids: Tensor | None = None,
    col_ids: Tensor | None = None,
    extra_y: Tensor | None = None,
    extra_ids: Tensor | None = None,
    row_negatives: Tensor | None = None,
) -> Tensor:
    """One direction of InfoNCE: each row of x (N, D) classifies its positives among the
    candidates y (M, D) plus ``extra_y`` (K, D) (memory-bank entries with ids ``extra_ids``;
    a stored sample of the same group counts as a positive) plus its own ``row_negatives``
    (N, R, D) (negatives that only that row competes against). Mean over rows.
    ``logit_scale``: () or (N, 1), one per row."""
    row_ids, col_ids = resolve_ids(x, y, row_ids, col_ids)
    scale = logit_scale.exp()
    logits = scale * x @ y.T  # (N, M)
    pos = positive_mask(row_ids, col_ids)  # (N, M)
    if extra_y is not None and extra_y.shape[0] > 0:
        if extra_ids is None:
            extra_ids = torch.full((extra_y.shape[0],), -1, dtype=row_ids.dtype, device=x.device)
        logits = torch.cat([logits, scale * x @ extra_y.T], dim=1)  # (N, M + K)
        pos = torch.cat([pos, positive_mask(row_ids, extra_ids)], dim=1)
    if row_negatives is not None and row_negatives.shape[1] > 0:
        own = scale * torch.einsum("nd,nrd->nr", x, row_negatives)  # (N, R)
        logits = torch.cat([logits, own], dim=1)
        pos = torch.cat([pos, torch.zeros_like(own, dtype=torch.bool)], dim=1)
    return multi_positive_ce(logits, pos)


def info_nce(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor,
    row_ids: Tensor | None = None,
    col_ids: Tensor | None = None,
) -> Tensor:
    """Symmetric InfoNCE (CLIP) over a square batch: mean of the x->y and y->x losses.
    x, y: (N, D); row_ids/col_ids: (N,) group ids (default: the diagonal)."""
    return 0.5 * (
        info_nce_directional(x, y, logit_scale, row_ids, col_ids)
        + info_nce_directional(y, x, logit_scale, col_ids, row_ids)
    )


def siglip_loss(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor,
    bias: Tensor,
    row_ids: Tensor | None = None,
    col_ids: Tensor | None = None,
) -> Tensor:
    """Dense SigLIP sigmoid loss: -1/N * sum_ij log sigmoid(z_ij * (t x_i.y_j + b)),
    z_ij = +1 for positives and -1 otherwise. Materialises the (N, M) logits."""
    row_ids, col_ids = resolve_ids(x, y, row_ids, col_ids)
    logits = logit_scale.exp() * x @ y.T + bias  # (N, M)
    z = positive_mask(row_ids, col_ids).to(logits.dtype) * 2.0 - 1.0  # (N, M) in {-1, +1}
    return -F.logsigmoid(z * logits).sum() / x.shape[0]


class _ChunkedSiglip(torch.autograd.Function):
    """SigLIP loss evaluated over column chunks of width c, so peak memory is O(N * c), not
    O(N * M). The loss is a scalar, so its gradients are computed in the same pass over the
    blocks as its value (three matmuls per block, as the dense loss needs) and only scaled by
    the incoming gradient in backward: no block is computed twice.

    Per block l = t x.y + b, with P the positives: the loss is sum softplus(l) - sum_P l (as
    -log sigmoid(z l) = softplus(l) - [z = +1] l), and its gradient d/dl = sigmoid(l) - [P].
    A block costs two (N, c) buffers: the similarities and the logits, turned into d/dl in place."""

    @staticmethod
    def forward(ctx, x, y, logit_scale, bias, row_ids, col_ids, chunk: int):  # type: ignore[override]
        scale = logit_scale.exp()
        acc = torch.float32 if x.dtype != torch.float64 else torch.float64
        total = x.new_zeros((), dtype=acc)
        need_grad = any(ctx.needs_input_grad[:4])
        if need_grad:
            gx, gy = torch.zeros_like(x), torch.zeros_like(y)
            g_scale, g_bias = x.new_zeros((), dtype=acc), x.new_zeros((), dtype=acc)
        n = x.shape[0]
        for j0 in range(0, y.shape[0], chunk):
            yc = y[j0 : j0 + chunk]  # (c, D)
            sim = x @ yc.T  # (N, c)
            logits = sim * scale + bias  # (N, c)
            pos = row_ids[:, None] == col_ids[None, j0 : j0 + chunk]  # (N, c) bool
            # masked sum without boolean indexing (which would synchronise with the host on a GPU)
            total = total + F.softplus(logits).sum(dtype=acc) - torch.where(pos, logits, 0).sum(dtype=acc)
            if need_grad:
                g = logits.sigmoid_().sub_(pos.view(torch.uint8))  # dL/dl, in place of the logits
                gx.add_(g @ yc)
                gy[j0 : j0 + chunk] = g.T @ x
                g_scale += torch.dot(g.reshape(-1), sim.reshape(-1)).to(acc)
                g_bias += g.sum(dtype=acc)
                del g
            del sim, logits, pos
        if need_grad:
            # d/d logit_scale = scale * sum g * sim; d/dx and d/dy carry the factor scale
            ctx.save_for_backward(gx.mul_(scale / n), gy.mul_(scale / n),
                                  (g_scale * scale / n).reshape(logit_scale.shape).to(logit_scale.dtype),
                                  (g_bias / n).reshape(bias.shape).to(bias.dtype))
        return total / n

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        gx, gy, g_logit_scale, g_bias = ctx.saved_tensors
        return gx * grad_out, gy * grad_out, g_logit_scale * grad_out, g_bias * grad_out, None, None, None


def siglip_loss_chunked(
    x: Tensor,
    y: Tensor,
    logit_scale: Tensor,
    bias: Tensor,
    row_ids: Tensor | None = None,
    col_ids: Tensor | None = None,
    chunk: int = 1024,
) -> Tensor:
    """Same value and gradients as :func:`siglip_loss`, with peak memory O(N * chunk)."""
    if chunk <= 0:
        raise ValueError(f"chunk={chunk}: must be > 0")
    row_ids, col_ids = resolve_ids(x, y, row_ids, col_ids)
    return _ChunkedSiglip.apply(x, y, logit_scale, bias, row_ids, col_ids, int(chunk))
