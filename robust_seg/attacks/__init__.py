"""Attacks on segmentation models: all ``attack(model, images, labels, *, eps, ...) -> AttackResult``.

Fixed-radius (SEA paper): :func:`sea`, :func:`apgd`, :func:`pgd` with the losses of ``LOSSES``.
Minimal-norm (thesis Ch. 5): :mod:`robust_seg.attacks.minimal_norm`.
"""
from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.invariants import ThreatModelViolation, check_linf_box
from robust_seg.attacks.losses import LOSSES, AttackLoss, get_loss
from robust_seg.attacks.pgd import paper_step_size, pgd
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.schedules import apgd_checkpoints, radius_schedule
from robust_seg.attacks.sea import ALL_LOSSES, SEA_LOSSES, sea

__all__ = ["ALL_LOSSES", "LOSSES", "SEA_LOSSES", "AttackLoss", "AttackResult", "ThreatModelViolation", "apgd",
           "apgd_checkpoints", "check_linf_box", "get_loss", "paper_step_size", "pgd", "radius_schedule", "sea"]
