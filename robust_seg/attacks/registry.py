"""The ``attack`` config group as data: each name's :class:`AttackSpec` (function, readable name, kind), and
:class:`ResolvedAttack`, an attack with checked options that the evaluation driver runs on every batch."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from omegaconf import OmegaConf

from robust_seg.attacks.apgd import apgd
from robust_seg.attacks.black_box import sea_square, square
from robust_seg.attacks.clean import clean
from robust_seg.compat.corruptions import COMMON, EXTRA
from robust_seg.attacks.corruptions import check_corruption_options, chosen, corrupted, corruption_runs, corruptions
from robust_seg.attacks.minimal_norm import (alma_prox, dag, fmn_linf, ifgsm_binary_search, mifgsm_binary_search,
                                             pdpgd_linf, pgd_binary_search)
from robust_seg.attacks.pgd import pgd
from robust_seg.attacks.result import AttackResult
from robust_seg.attacks.sea import sea
from robust_seg.attacks.targets import TargetMap, parse_target
from robust_seg.errors import ConfigError
from robust_seg.metrics.apsr import apsr
from robust_seg.models.defenses import adaptive
from robust_seg.names import COMPONENT_LABELS, MINIMAL_NORM_KEY

BOUNDED, MINIMAL_NORM, CORRUPTION = "bounded", "minimal_norm", "corruption"
CORRUPTION_NAMES = COMMON + EXTRA


PAPER_NAMES = {("pgd", "bal_ce"): "SegPGD", ("pgd", "cossim_ce"): "CosPGD", ("apgd", "bal_ce"): "SegAPGD",
               ("apgd", "cossim_ce"): "CosAPGD"}
"""PGD on SegPGD's balanced CE (Gu et al. 2022) and on CosPGD's cosine-weighted CE (Agnihotri & Keuper 2023), and
APGD on the same losses: the names of the SEA paper's Tables 1 and 7."""


@dataclass(frozen=True)
class AttackSpec:
    """An attack of the ``attack`` config group: its function ``attack(model, images, labels, **options)``, its
    readable name, and its kind: ``bounded`` (run at each radius ``eps``, SEA paper) or ``minimal_norm`` (run once
    per batch, returns each image's smallest perturbation norm, thesis Ch. 5)."""

    function: Callable
    label: str
    kind: str = BOUNDED


ATTACKS: dict[str, AttackSpec] = {
    "none": AttackSpec(clean, "clean"),
    "sea": AttackSpec(sea, "SEA"),
    "apgd": AttackSpec(apgd, "APGD"),
    "pgd": AttackSpec(pgd, "PGD"),
    "square": AttackSpec(square, "Square"),
    "sea_square": AttackSpec(sea_square, "SEA + Square"),
    "alma_prox": AttackSpec(alma_prox, "ALMA prox", MINIMAL_NORM),
    "dag": AttackSpec(dag, "DAG", MINIMAL_NORM),
    "fmn": AttackSpec(fmn_linf, "FMN", MINIMAL_NORM),
    "pdpgd": AttackSpec(pdpgd_linf, "PDPGD", MINIMAL_NORM),
    "ifgsm_bs": AttackSpec(ifgsm_binary_search, "I-FGSM (binary search)", MINIMAL_NORM),
    "mifgsm_bs": AttackSpec(mifgsm_binary_search, "MI-FGSM (binary search)", MINIMAL_NORM),
    "pgd_bs": AttackSpec(pgd_binary_search, "PGD (binary search)", MINIMAL_NORM),
    "corruptions": AttackSpec(corruptions, "Corruptions", CORRUPTION),
}


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


def redrawn(model, result: AttackResult, labels: torch.Tensor) -> AttackResult:
    """A randomized model's answer on the attack's final images, from one fresh seeded draw per image (the attack's
    own draws picked its best iterate, so their accuracy is biased low); an ensemble's worst case is then, per
    image, its component with the lowest redrawn accuracy."""
    from robust_seg.attacks.losses import predicted_classes
    from robust_seg.metrics.segmentation import pixel_accuracy

    def answer(adv_images):
        with torch.no_grad():
            predictions = predicted_classes(model(adv_images))
        return predictions, 100 * pixel_accuracy(predictions, labels)

    components = {name: AttackResult(c.adv_images, *answer(c.adv_images), c.extras, c.components)
                  for name, c in result.components.items()}
    if not components:
        return AttackResult(result.adv_images, *answer(result.adv_images), result.extras)
    stacked = list(components.values())
    best = torch.stack([c.accuracy for c in stacked]).argmin(0)
    pick = lambda field: torch.stack([getattr(stacked[int(k)], field)[i] for i, k in enumerate(best)])  # noqa: E731
    return AttackResult(pick("adv_images"), pick("predictions"), pick("accuracy"), result.extras, components)


@dataclass(frozen=True)
class ResolvedAttack:
    """An attack function with its checked options; ``run`` is what the evaluation driver calls.

    target: the ``attack.target`` of a targeted attack (``robust_seg.attacks.targets``), None = untargeted.
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    target: TargetMap | None = None

    @property
    def spec(self) -> AttackSpec:
        return ATTACKS[self.name]

    @property
    def function(self) -> Callable:
        return self.spec.function

    @property
    def minimal_norm(self) -> bool:
        return self.spec.kind == MINIMAL_NORM

    @property
    def corruption(self) -> bool:
        """Common corruptions (``attack=corruptions``): one run per corruption and severity, no radius."""
        return self.spec.kind == CORRUPTION

    def _corruption_runs(self) -> list:
        return corruption_runs(*chosen(self.options))

    def run_keys(self, keys: list[str]) -> list[str]:
        """The results keys of its runs: the radii's (bounded attack) or ``MINIMAL_NORM_KEY`` (minimal-norm attack)."""
        if self.corruption:
            return [key for _, key in self._corruption_runs()]
        return [MINIMAL_NORM_KEY] if self.minimal_norm else list(keys)

    def runs(self, radii: list) -> list[tuple[float | None, str]]:
        """(radius, results key) of each run on a batch, from the evaluation's ``Radius`` (value, key) pairs: one
        per radius for a bounded attack; one without a radius for a minimal-norm attack (its radii only serve the
        robust-at-eps curve)."""
        if self.corruption:
            return self._corruption_runs()
        return [(None, MINIMAL_NORM_KEY)] if self.minimal_norm else [(radius.value, radius.key) for radius in radii]

    @property
    def label(self) -> str:
        """A readable name, e.g. ``SEA (4 losses x 50 it.)``, ``APGD (Mask-CE, red-eps, 300 it.)``, ``SegPGD (300 it.)``
        (PGD / APGD on the loss of SegPGD or CosPGD are named as the SEA paper's tables name them)."""
        options, parts = self.options, []
        if self.corruption:
            runs = self._corruption_runs()
            return (f"Corruptions ({len(dict.fromkeys(c for (c, _), _ in runs))} x "
                    f"{len(dict.fromkeys(s for (_, s), _ in runs))} severities)")
        paper_name = PAPER_NAMES.get((self.name, options.get("loss")))
        if paper_name is not None:
            options = {key: value for key, value in options.items() if key != "loss"}
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
        name = paper_name or self.spec.label
        return f"{name} ({', '.join(parts)})" if parts else name

    def expected_passes(self) -> int | None:
        """Model passes (iterations, queries) one run on a batch takes at most, for progress bars (None: unknown)."""
        options = self.options
        if self.name == "none" or self.corruption:
            return 1
        runs = len(options["losses"]) if "losses" in options else 1
        budget = options.get("iterations")
        starts = {"red": 3, "const": options.get("restarts", 1)}.get(options.get("schedule"), 1)  # + their first passes
        total = runs * (budget * options.get("steps", 1) * options.get("eot_samples", 1) + starts) \
            if isinstance(budget, int) else None
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
        if self.corruption:  # eps is (corruption, severity); image i's draw depends on its index, not on the run order
            (name, severity), indices = eps, image_indices or range(images.shape[0])
            seeds = [_seed((seed[0], int(i), CORRUPTION_NAMES.index(name), severity)) for i in indices]
            return corrupted(model, images, labels, corruption=name, severity=severity, image_seeds=seeds)
        model_seeds = None if image_indices is None else [_seed((*seed, int(i), 7)) for i in image_indices]
        if eps == 0 and not self.minimal_norm:
            with adaptive(model, image_seeds=model_seeds):
                return clean(model, images, labels)
        parameters = inspect.signature(self.function).parameters
        kwargs = {**self.options, **targeting}
        adaptive_options = {key: kwargs.pop(key, default) for key, default in ADAPTIVE_OPTIONS.items()}
        if image_indices is not None and "image_seeds" in parameters:
            kwargs["image_seeds"] = [_seed((*seed, int(index))) for index in image_indices]
        elif "generator" in parameters:
            kwargs["generator"] = torch.Generator(device=images.device).manual_seed(_seed(seed))
        elif "seed" in parameters:
            kwargs["seed"] = _seed(seed)
        if eps is not None and "eps" in parameters:
            kwargs["eps"] = eps
        with adaptive(model, **adaptive_options, image_seeds=model_seeds):
            result = self.function(model, images, labels, **kwargs)
            return redrawn(model, result, labels) if getattr(model, "randomized", False) else result


ADAPTIVE_OPTIONS = {"bpda": False, "eot_samples": 1}
"""Options of every gradient attack against a defended model (``robust_seg.models.defenses``): BPDA through
non-differentiable input transforms, EOT over ``eot_samples`` draws of a randomized model (PGD, APGD, SEA)."""
EOT_ATTACKS = ("pgd", "apgd", "sea", "sea_square")


def _check_adaptive(name: str, key: str, value) -> None:
    if name in ("none", "square", "corruptions"):
        raise ConfigError(f"attack.options.{key}: {name} takes no gradient, so it has no {key}")
    if key == "bpda" and not isinstance(value, bool):
        raise ConfigError(f"attack.options.bpda: expected true or false, got {value!r}")
    if key == "eot_samples":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"attack.options.eot_samples: expected a positive integer, got {value!r}")
        if value > 1 and name not in EOT_ATTACKS:
            raise ConfigError(f"attack.options.eot_samples: EOT is implemented for {', '.join(EOT_ATTACKS)}, "
                              f"not {name}")


def resolve_attack(cfg) -> ResolvedAttack:
    """Check ``cfg.name`` and ``cfg.options`` against the attack's signature; one clear line on error."""
    if cfg.name not in ATTACKS:
        raise ConfigError(f"unknown attack '{cfg.name}' (choose from {', '.join(sorted(ATTACKS))})")
    function = ATTACKS[cfg.name].function
    options = OmegaConf.to_container(cfg.options, resolve=True) if OmegaConf.is_config(cfg.options) \
        else dict(cfg.options)
    parameters = inspect.signature(function).parameters
    target = parse_target(getattr(cfg, "target", None))
    if target is not None and "target_labels" not in parameters:
        targetable = sorted(name for name, spec in ATTACKS.items()
                            if "target_labels" in inspect.signature(spec.function).parameters)
        raise ConfigError(f"attack.target: {cfg.name} has no targeted mode (targeted attacks: {', '.join(targetable)})")
    reserved = {"model", "images", "labels", "eps", "generator", "seed", "targeted", "target_labels", "image_seeds",
                "start"}
    for key, value in options.items():
        if key in ADAPTIVE_OPTIONS:
            _check_adaptive(cfg.name, key, value)
            continue
        if key not in parameters or key in reserved:
            known = ", ".join(p for p in parameters if p not in reserved)
            raise ConfigError(f"attack.options.{key}: not an option of {cfg.name} "
                              f"({f'options: {known}' if known else 'it takes no options'})")
        default = parameters[key].default
        if isinstance(default, bool) and not isinstance(value, bool) or \
                isinstance(default, (int, float)) and not isinstance(default, bool) and \
                not isinstance(value, (int, float)) and value is not None and not isinstance(value, str):
            raise ConfigError(f"attack.options.{key}: expected a {type(default).__name__}, got {value!r}")
    if ATTACKS[cfg.name].kind == CORRUPTION:
        check_corruption_options(options)
    return ResolvedAttack(cfg.name, options, target)
