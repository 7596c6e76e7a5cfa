"""Attack names of the ``attack`` config group -> attack functions, with option checking."""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from omegaconf import OmegaConf

from robust_seg.attacks.clean import clean
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.targets import TargetMap, parse_target
from robust_seg.errors import ConfigError
from robust_seg.metrics.apsr import apsr
from robust_seg.names import ATTACK_LABELS, COMPONENT_LABELS

# name -> "module:function"; imported on first use.
ATTACKS: dict[str, str] = {
    "none": "robust_seg.attacks.clean:clean",
    "sea": "robust_seg.attacks.sea:sea",
    "apgd": "robust_seg.attacks.apgd:apgd",
    "pgd": "robust_seg.attacks.pgd:pgd",
    "square": "robust_seg.attacks.black_box:square",
    "sea_square": "robust_seg.attacks.black_box:sea_square",
    "alma_prox": "robust_seg.attacks.minimal_norm:alma_prox",
    "dag": "robust_seg.attacks.minimal_norm:dag",
    "fmn": "robust_seg.attacks.minimal_norm:fmn_linf",
    "pdpgd": "robust_seg.attacks.minimal_norm:pdpgd_linf",
    "ifgsm_bs": "robust_seg.attacks.minimal_norm:ifgsm_binary_search",
    "mifgsm_bs": "robust_seg.attacks.minimal_norm:mifgsm_binary_search",
    "pgd_bs": "robust_seg.attacks.minimal_norm:pgd_binary_search",
}
MINIMAL_NORM: set[str] = {"alma_prox", "dag", "fmn", "pdpgd", "ifgsm_bs", "mifgsm_bs", "pgd_bs"}
"""Attacks that minimise the perturbation norm (thesis Ch. 5) instead of working at a fixed radius."""


def _import(path: str) -> Callable:
    module, function = path.split(":")
    return getattr(importlib.import_module(module), function)


def _seed(parts: tuple[int, ...]) -> int:
    value = 0
    for part in parts:
        value = (value * 1_000_003 + int(part)) % (2**63 - 1)
    return value


def _with_target_apsr(result: AttackResult, labels: torch.Tensor, target_labels: torch.Tensor) -> AttackResult:
    """``result`` (and its components) with extras['apsr'] = agreement with the target map (eq. 5.19, targeted)."""
    components = {name: _with_target_apsr(component, labels, target_labels)
                  for name, component in result.components.items()}
    extras = {**result.extras, "apsr": apsr(result.predictions, labels, target_labels)}
    return AttackResult(result.adv_images, result.predictions, result.accuracy, extras, components)


@dataclass(frozen=True)
class ResolvedAttack:
    """An attack function with its checked options; ``run`` is what the evaluation driver calls.

    target: the ``attack.target`` of a targeted attack (``robust_seg.attacks.targets``), None = untargeted.
    """

    name: str
    function: Callable
    options: dict[str, Any] = field(default_factory=dict)
    target: TargetMap | None = None

    @property
    def minimal_norm(self) -> bool:
        return self.name in MINIMAL_NORM

    @property
    def label(self) -> str:
        """A readable name, e.g. ``SEA (4 losses x 50 it.)``, ``APGD (Mask-CE, red-eps, 300 it.)``."""
        options, parts = self.options, []
        if "losses" in options:
            parts.append(f"{len(options['losses'])} losses x {options.get('iterations', 300)} it.")
        else:
            if "loss" in options:
                parts.append(COMPONENT_LABELS.get(options["loss"], options["loss"]))
            if "schedule" in options:
                parts.append(f"{options['schedule']}-eps")
            if "iterations" in options:
                parts.append(f"{options['iterations']} it.")
        if "queries" in options:
            parts.append(f"{options['queries']} queries")
        if self.target is not None:
            parts.append(f"targeted: {self.target.description}")
        name = ATTACK_LABELS.get(self.name, self.name)
        return f"{name} ({', '.join(parts)})" if parts else name

    def expected_passes(self) -> int | None:
        """Model passes (iterations, queries) one run on a batch takes at most, for progress bars (None: unknown)."""
        options = self.options
        if self.name == "none":
            return 1
        runs = len(options["losses"]) if "losses" in options else 1
        budget = options.get("iterations")
        starts = {"red": 3, "const": options.get("restarts", 1)}.get(options.get("schedule"), 1)  # + their first passes
        total = runs * (budget * options.get("steps", 1) + starts) if isinstance(budget, int) else None
        if "queries" in options:
            total = (total or 0) + options["queries"]
        return total

    @property
    def description(self) -> str:
        shown = ", ".join([f"{k}={v}" for k, v in sorted(self.options.items())]
                          + ([f"target={self.target.description}"] if self.target is not None else []))
        return f"{self.name}({shown})" if shown else self.name

    def run(self, model, images: torch.Tensor, labels: torch.Tensor, *, eps: float | None,
            seed: tuple[int, ...] = (0,), image_indices: list[int] | None = None) -> AttackResult:
        """Run on one batch. Targeted (``self.target``): the batch's target map goes to the attack with
        ``targeted=True``; accuracy stays w.r.t. ``labels`` and extras['apsr'] is the agreement with the target.

        ``image_indices``: the images' indices in the dataset. Attacks with per-image seeds (``image_seeds``) then
        draw image i's randomness from (``seed``, its index) alone: the same in any batch, shard or process."""
        if self.target is None:
            return self._run(model, images, labels, eps, seed, {}, image_indices)
        target_labels = self.target.labels_for(labels, getattr(model, "num_classes", None))
        result = self._run(model, images, labels, eps, seed, {"targeted": True, "target_labels": target_labels},
                           image_indices)
        return _with_target_apsr(result, labels, target_labels)

    def _run(self, model, images, labels, eps, seed, targeting: dict, image_indices=None) -> AttackResult:
        if eps == 0 and not self.minimal_norm:
            return clean(model, images, labels)
        parameters = inspect.signature(self.function).parameters
        kwargs = {**self.options, **targeting}
        if image_indices is not None and "image_seeds" in parameters:
            kwargs["image_seeds"] = [_seed((*seed, int(index))) for index in image_indices]
        elif "generator" in parameters:
            kwargs["generator"] = torch.Generator(device=images.device).manual_seed(_seed(seed))
        elif "seed" in parameters:
            kwargs["seed"] = _seed(seed)
        if eps is not None and "eps" in parameters:
            kwargs["eps"] = eps
        if kwargs.get("step_size") == "paper":
            from robust_seg.attacks.pgd import paper_step_size

            kwargs["step_size"] = paper_step_size(eps, kwargs.get("iterations", 300))
        return self.function(model, images, labels, **kwargs)


def resolve_attack(cfg) -> ResolvedAttack:
    """Check ``cfg.name`` and ``cfg.options`` against the attack's signature; one clear line on error."""
    if cfg.name not in ATTACKS:
        raise ConfigError(f"unknown attack '{cfg.name}' (choose from {', '.join(sorted(ATTACKS))})")
    function = _import(ATTACKS[cfg.name])
    options = OmegaConf.to_container(cfg.options, resolve=True) if OmegaConf.is_config(cfg.options) \
        else dict(cfg.options)
    parameters = inspect.signature(function).parameters
    target = parse_target(getattr(cfg, "target", None))
    if target is not None and "target_labels" not in parameters:
        targetable = sorted(name for name, path in ATTACKS.items()
                            if "target_labels" in inspect.signature(_import(path)).parameters)
        raise ConfigError(f"attack.target: {cfg.name} has no targeted mode (targeted attacks: {', '.join(targetable)})")
    reserved = {"model", "images", "labels", "eps", "generator", "seed", "targeted", "target_labels", "image_seeds",
                "start"}
    for key, value in options.items():
        if key not in parameters or key in reserved:
            known = ", ".join(p for p in parameters if p not in reserved)
            raise ConfigError(f"attack.options.{key}: not an option of {cfg.name} (options: {known})")
        default = parameters[key].default
        if isinstance(default, bool) and not isinstance(value, bool) or \
                isinstance(default, (int, float)) and not isinstance(default, bool) and \
                not isinstance(value, (int, float)) and value is not None and not isinstance(value, str):
            raise ConfigError(f"attack.options.{key}: expected a {type(default).__name__}, got {value!r}")
    return ResolvedAttack(cfg.name, function, options, target)
