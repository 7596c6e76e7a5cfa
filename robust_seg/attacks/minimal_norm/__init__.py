"""Minimal-norm Linf attacks for semantic segmentation (thesis Ch. 5 and App. IV).

Each attack is ``attack(model, images, labels, *, targeted=False, target_labels=None,
nu=0.99, ...) -> AttackResult`` and returns, per image, the smallest-norm evaluated
iterate with APSR >= nu (else the best-APSR one), with extras 'norm', 'apsr',
'success', 'forwards', 'backwards'.
"""
from robust_seg.attacks.minimal_norm.alma_prox import alma_prox
from robust_seg.attacks.minimal_norm.binary_search import ifgsm_binary_search, mifgsm_binary_search, pgd_binary_search
from robust_seg.attacks.minimal_norm.dag import dag
from robust_seg.attacks.minimal_norm.fmn import fmn_linf
from robust_seg.attacks.minimal_norm.pdpgd import pdpgd_linf
from robust_seg.attacks.minimal_norm.prox import prox_linf_box

__all__ = [
    "alma_prox",
    "dag",
    "fmn_linf",
    "ifgsm_binary_search",
    "mifgsm_binary_search",
    "pdpgd_linf",
    "pgd_binary_search",
    "prox_linf_box",
]
