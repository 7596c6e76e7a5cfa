"""Attacks on segmentation models: all ``attack(model, images, labels, *, eps, ...) -> AttackResult``.

Fixed-radius (SEA paper): :func:`sea`, :func:`apgd`, :func:`pgd` with the losses of ``LOSSES``.
Black-box: :func:`square`, :func:`sea_square`. Common corruptions: :func:`corruptions` (no radius). Minimal-norm (thesis Ch. 5): :func:`alma_prox`, :func:`dag`,
:func:`fmn_linf`, :func:`pdpgd_linf` and the binary searches (:mod:`robust_seg.attacks.minimal_norm`).
"""
from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.invariants import ThreatModelViolation, check_linf_box
from robust_seg.attacks.losses import LOSSES, AttackLoss, get_loss
from robust_seg.attacks.pgd import paper_step_size, pgd
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.schedules import apgd_checkpoints, radius_schedule
from robust_seg.attacks.sea import ALL_LOSSES, SEA_LOSSES, sea
from robust_seg.attacks.black_box import sea_square, square
from robust_seg.attacks.corruptions import corruptions
from robust_seg.attacks.minimal_norm import (alma_prox, dag, fmn_linf, ifgsm_binary_search, mifgsm_binary_search,
                                             pdpgd_linf, pgd_binary_search)

from robust_seg.attacks.inputs import AttackInputError, checked

# The public functions check their inputs first (robust_seg.attacks.inputs); the evaluation driver calls the
# modules' own functions, whose inputs it has checked once.
(alma_prox, apgd, corruptions, dag, fmn_linf, ifgsm_binary_search, mifgsm_binary_search, pdpgd_linf, pgd,
 pgd_binary_search, sea, sea_square, square) = map(checked, (
    alma_prox, apgd, corruptions, dag, fmn_linf, ifgsm_binary_search, mifgsm_binary_search, pdpgd_linf, pgd,
    pgd_binary_search, sea, sea_square, square))

__all__ = ["AttackInputError", "ALL_LOSSES", "LOSSES", "SEA_LOSSES", "AttackLoss", "AttackResult", "ThreatModelViolation", "alma_prox",
           "apgd", "corruptions", "apgd_checkpoints", "check_linf_box", "dag", "fmn_linf", "get_loss", "ifgsm_binary_search",
           "mifgsm_binary_search", "paper_step_size", "pdpgd_linf", "pgd", "pgd_binary_search", "radius_schedule",
           "sea", "sea_square", "square"]
