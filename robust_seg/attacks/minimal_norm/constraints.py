"""Per-pixel misclassification constraints of the minimal-norm attacks (thesis eq. 4.4, 5.3, A III-8).

Every function returns a (B, H, W) map that is negative exactly where the pixel
is fooled (untargeted: argmax != label; targeted: argmax == target), so all
attacks share one sign convention. ``labels`` is the true label map for
untargeted attacks and the target map for targeted ones; unlabelled pixels
(IGNORE_INDEX) get an arbitrary finite value and must be masked by the caller.
"""
from __future__ import annotations

import torch

from robust_seg import IGNORE_INDEX

DENOMINATOR_FLOOR = 1e-12
"""Guards the DLR denominators against exact logit ties."""


def _safe_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels.masked_fill(labels == IGNORE_INDEX, 0).long().unsqueeze(1)


def _label_and_other_max(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z_y and max_{i != y} z_i, each (B, H, W)."""
    index = _safe_labels(labels)
    label_logit = logits.gather(1, index).squeeze(1)
    other_max = logits.scatter(1, index, float("-inf")).amax(1)
    return label_logit, other_max


def logit_difference(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """z_y - max_{i!=y} z_i (untargeted) or max_{i!=t} z_i - z_t (targeted): the DAG / FMN / PDPGD constraint."""
    label_logit, other_max = _label_and_other_max(logits, labels)
    return other_max - label_logit if targeted else label_logit - other_max


def decayed_constraint_mask(constraints: torch.Tensor, valid: torch.Tensor, valid_counts: torch.Tensor,
                            dropped_fraction: float) -> torch.Tensor:
    """Constraint masking of eq. 5.6: keep the valid pixels whose constraint is <= the xi-percentile.

    ``dropped_fraction`` is 1 - xi (so (1 - nu)(t - 1)/(N - 1) for the linear decay of
    eq. 5.6); per image, floor(dropped_fraction * ||m||_1) of the largest constraints
    are discarded (ties with the threshold are kept). ``valid_counts`` (B,) int64 on
    the CPU, so choosing the top-k size never waits on the device.
    """
    dropped = (valid_counts.double() * dropped_fraction + 1e-9).floor().long()
    largest = int(dropped.max()) if dropped.numel() else 0
    if largest == 0:
        return valid
    flat = constraints.masked_fill(~valid, float("-inf")).flatten(1)
    top = flat.topk(largest + 1, dim=1).values
    threshold = top.gather(1, dropped.to(top.device).unsqueeze(1)).squeeze(1)
    return valid & (constraints <= threshold.view(-1, *[1] * (constraints.ndim - 1)))


def _equal(logits: torch.Tensor, value: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """[logits == value] as 0/1 of the logits' dtype into ``out`` (may be ``logits``), (B, K, H, W) against (B, H, W).

    The comparison writes the floating-point result directly: on a CPU several times faster
    than a bool comparison followed by a conversion.
    """
    return torch.eq(logits, value.unsqueeze(1), out=out)


class DLRPlus:
    """DLR+ (eq. 4.4) / tDLR+ (eq. A III-8) of fixed labels with its exact gradient w.r.t. the logits, without autograd.

    DLR+(z, y) = (z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3), needs K >= 3 classes;
    tDLR+(z, t) = (max_{i!=t} z_i - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), needs K >= 4
    (pi: the classes sorted by decreasing logit; the denominators are floored at ``DENOMINATOR_FLOOR``). Both are
    scale invariant. :func:`dlr_plus` is this kernel as a differentiable function; tests/test_alma_prox.py checks
    both against the formula written with ``topk`` and autograd.

    ALMA prox evaluates the constraint once per iteration and back-propagates one
    weighted sum of it. ``topk`` along the class dimension and the autograd graph of the
    formula (gather, scatter, amax, topk backward) cost as much as a tenth of a
    small model's forward and backward on a CPU, so here
      - the largest logits come from an insertion network over the class slices (a median of
        three per slot: exact, every output is one of the inputs, ties included, as ``topk`` values);
      - z_y is gathered at the labels, and max_{i != y} z_i is the second largest logit where z_y
        is the largest, else the largest;
      - the prediction is the first index attaining the maximum (``argmax``'s rule), also kept as
        floating-point values in ``prediction_values``;
      - ``gradient(g)`` returns g * d DLR+ / d z, each term routed to the class attaining
        the logit it differentiates, with the floating-point formulas of autograd on the ``topk`` formula;
      - all per-pixel and per-logit results live in buffers allocated at the first call
        (fresh tensors of these sizes cost page faults on every call on a CPU).
    The values equal the ``topk`` formula's bit for bit; the gradient equals autograd's on it except at
    exact logit ties (``topk`` and ``amax`` route a tied derivative differently). The
    returned tensors are overwritten by the next call.
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, targeted: bool, dtype: torch.dtype):
        needed = 4 if targeted else 3
        if num_classes < needed:
            raise ValueError(f"{'tDLR+' if targeted else 'DLR+'} needs at least {needed} classes, got {num_classes}")
        self.targeted = targeted
        self.needed = needed
        self.num_classes = num_classes
        device = labels.device
        classes = torch.arange(num_classes, device=device).view(1, -1, 1, 1)
        self.label_index = _safe_labels(labels)
        one_hot = self.label_index == classes
        self.one_hot = one_hot.to(dtype)
        self.reversed_classes = (num_classes - 1 - classes).to(dtype)
        self.class_row = classes.view(1, -1).to(dtype)
        logit_buffer = lambda: torch.empty(one_hot.shape, dtype=dtype, device=device)
        pixel_buffer = lambda: torch.empty(labels.shape, dtype=dtype, device=device)
        self.scratch, self.at_max, self.gradient_buffer = (logit_buffer() for _ in range(3))
        self.top = [pixel_buffer() for _ in range(needed)]
        (self.label_logit, self.other_max, self.label_is_max, self.difference, self.denominator, self.values,
         self.on_difference, self.on_denominator, self.on_label, self.unclamped, self.prediction_values) = (
            pixel_buffer() for _ in range(11))
        self.predictions = torch.empty(labels.shape, dtype=torch.long, device=device)
        self.logits = None

    def _largest(self, logits: torch.Tensor) -> list[torch.Tensor]:
        """The 3 (4 if targeted) largest values per pixel, in decreasing order, with multiplicity (as ``topk``).

        Insertion of each class slice v into the sorted list t_0 >= t_1 >= ...: t_j <- median(t_j, v, t_{j-1})
        = clamp(v, t_j, t_{j-1}) from the last slot up, then t_0 <- max(t_0, v); every output is one of the inputs.
        """
        top = self.top
        values = logits.unbind(1)
        top[0].copy_(values[0])
        for slot in top[1:]:
            slot.fill_(float("-inf"))
        for value in values[1:]:
            for slot in range(self.needed - 1, 0, -1):
                torch.clamp(value, min=top[slot], max=top[slot - 1], out=top[slot])
            torch.maximum(top[0], value, out=top[0])
        return top

    def __call__(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(DLR+ per pixel (B, H, W), predictions (B, H, W) long) of the logits (B, K, H, W), detached."""
        logits = self.logits = logits.detach()
        top = self._largest(logits)
        torch.gather(logits, 1, self.label_index, out=self.label_logit.unsqueeze(1))
        # max_{i != y} z_i: the second largest logit (with multiplicity, as topk) if z_y is the largest, else the largest
        torch.eq(self.label_logit, top[0], out=self.label_is_max)
        torch.where(self.label_is_max.bool(), top[1], top[0], out=self.other_max)
        if self.targeted:
            torch.sub(self.other_max, self.label_logit, out=self.difference)
            torch.add(top[2], top[3], out=self.denominator).mul_(-0.5).add_(top[0])
        else:
            torch.sub(self.label_logit, self.other_max, out=self.difference)
            torch.sub(top[0], top[2], out=self.denominator)
        torch.ge(self.denominator, DENOMINATOR_FLOOR, out=self.unclamped)
        self.denominator.clamp_min_(DENOMINATOR_FLOOR)
        torch.div(self.difference, self.denominator, out=self.values)
        at_max = _equal(logits, top[0], self.at_max)
        if bool(torch.eq(top[1], top[0], out=self.on_label).any()):  # a tied maximum: the first index attaining it
            first_max = torch.amax(torch.mul(at_max, self.reversed_classes, out=self.scratch), 1, out=self.on_label)
            torch.sub(self.num_classes - 1, first_max, out=self.prediction_values)
        else:  # one class attains each maximum: its index is sum_k k [z_k == max], exact in floating point
            torch.matmul(self.class_row, at_max.flatten(2), out=self.prediction_values.view(len(logits), 1, -1))
        self.predictions.copy_(self.prediction_values)
        return self.values, self.predictions

    def gradient(self, upstream: torch.Tensor) -> torch.Tensor:
        """upstream * d DLR+ / d logits (B, K, H, W) at the logits of the last call; upstream (B, H, W).

        Every class gets at most two nonzero terms, summed as autograd sums them, so
        the result is autograd's to the bit wherever the logits have no ties. The classes
        i != y attaining max_{i != y} z_i are [z_i == max_{i != y} z_i] - [i == y][z_y == max_{i != y} z_i].
        """
        logits, top, clamped = self.logits, self.top, self.denominator
        on_difference = torch.div(upstream, clamped, out=self.on_difference)  # div backward, then clamp_min's
        on_denominator = torch.div(self.difference, clamped, out=self.on_denominator).div_(clamped)
        on_denominator.mul_(upstream).neg_().mul_(self.unclamped)  # -upstream * ((d / c) / c)
        label_ties = torch.eq(self.label_logit, self.other_max, out=self.on_label)
        gradient, scratch = self.gradient_buffer, self.scratch
        at_other = _equal(logits, self.other_max, gradient)  # also marks y where z_y ties: corrected below
        if self.targeted:  # (max_{i != t} z_i - z_t) / (t1 - (t3 + t4) / 2)
            gradient.mul_(on_difference.unsqueeze(1))
            gradient.addcmul_(self.one_hot, label_ties.add_(1).mul_(on_difference).neg_().unsqueeze(1))
            gradient.addcmul_(self.at_max, on_denominator.unsqueeze(1))
            half = on_denominator.mul_(-0.5).unsqueeze(1)
            gradient.addcmul_(_equal(logits, top[2], scratch), half)
            gradient.addcmul_(_equal(logits, top[3], scratch), half)
        else:  # (z_y - max_{i != y} z_i) / (t1 - t3)
            at_other.mul_(on_difference.neg().unsqueeze(1))
            gradient.addcmul_(self.one_hot, label_ties.add_(1).mul_(on_difference).unsqueeze(1))
            gradient.addcmul_(self.at_max, on_denominator.unsqueeze(1))
            gradient.addcmul_(_equal(logits, top[2], scratch), on_denominator.neg_().unsqueeze(1))
        self.logits = None
        return gradient


class _DLRPlusFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
        kernel = DLRPlus(labels, logits.shape[1], targeted, logits.dtype)
        values, _ = kernel(logits)
        ctx.kernel = kernel
        return values.clone()

    @staticmethod
    def backward(ctx, upstream: torch.Tensor):
        return ctx.kernel.gradient(upstream.contiguous()).clone(), None, None


def dlr_plus(logits: torch.Tensor, labels: torch.Tensor, targeted: bool = False) -> torch.Tensor:
    """DLR+ (eq. 4.4) or, targeted, tDLR+ (eq. A III-8), per pixel (B, H, W): :class:`DLRPlus`'s values, with its
    exact gradient when ``logits`` require one (the binary-search PGD on DLR+ of Table 5.1)."""
    if torch.is_grad_enabled() and logits.requires_grad:
        return _DLRPlusFunction.apply(logits, labels, targeted)
    return DLRPlus(labels, logits.shape[1], targeted, logits.dtype)(logits)[0].clone()
