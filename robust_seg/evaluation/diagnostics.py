"""Is the evaluation itself reliable? Attack-failure checks in every robustness report (docs/diagnostics.md).

For a bounded attack, per batch and from the same images (Carlini et al. 2019; Pintor et al. 2022, "Indicators of
Attack Failure"; AutoAttack's black-box component):

- unavailable gradients: the input gradient of the CE over labelled pixels at the clean point is zero, NaN or inf;
- incomplete optimisation: the attack's best iterate still improved in the last 10% of its iterations (APGD, SEA:
  extras 'late_improvement');
- unconstrained attack: the same attack at eps = 1 (``UNCONSTRAINED_ITERATIONS`` iterations) must bring ACC near 0;
- radius monotonicity: robust ACC must not increase with eps, for the dataset and per image;
- black-box beats white-box: a random vertex of the eps-ball (one draw per image and radius), or Square after SEA
  (``attack=sea_square``), lowers an image's accuracy below the white-box result;
- randomized model: two clean forwards of an image give different predictions (a randomized defense, e.g.
  ``model.input_transforms`` with random resizing or noise, or test-time dropout).

A flag names its remedy: BPDA (``attack.options.bpda=true``) where gradients are unavailable or a black-box probe
wins, EOT (``attack.options.eot_samples``) for a randomized model (Athalye et al. 2018; Tramer et al. 2020).

Each check reports ``ok`` or ``flag`` with its figure (``n/a`` where it does not apply). The randomness of the
probes comes from the images' dataset indices, and the per-image values are kept by index, so shards merge exactly.
The cost (seconds beside the attack's) is recorded and printed. ``diagnostics=false`` turns the checks off.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from robust_seg.attacks.losses import predicted_classes
from robust_seg import IGNORE_INDEX
from robust_seg.attacks.pgd import mix_seed, short_pgd_step_size
from robust_seg.metrics.segmentation import pixel_accuracy

UNCONSTRAINED_EPS = 1.0
UNCONSTRAINED_ITERATIONS = 10
UNCONSTRAINED_MAX_ACC = 5.0
"""ACC (%) at eps = 1 above which the unconstrained check flags: any image can be replaced there."""
LATE_MAX_SHARE = 0.2
"""Share of images still improving in the last 10% of iterations above which the optimisation looks incomplete."""
MONOTONICITY_MAX_SHARE = 0.1
"""Share of images whose accuracy rises with the radius (attack randomness) above which the check flags."""
CHECKS = ("unavailable_gradients", "incomplete_optimisation", "unconstrained_attack", "radius_monotonicity",
          "black_box_beats_white_box", "randomized_model")
BPDA_REMEDY = ("; if the model has a non-differentiable step (e.g. model.input_transforms quantize or jpeg), rerun "
               "with attack.options.bpda=true (BPDA)")
EOT_REMEDY = "; for a randomized model rerun with attack.options.eot_samples=8 (EOT)"
_BOUNDED_ONLY = "n/a: not a bounded attack"


def clean_gradient_unusable(model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the input gradient of the mean CE over labelled pixels is zero, NaN or inf at the clean point."""
    points = images.detach().clone().requires_grad_(True)
    logits = model(points)
    pixel_loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="none")
    count = (labels != IGNORE_INDEX).flatten(1).sum(1).clamp_min(1)
    (gradient,) = torch.autograd.grad((pixel_loss.flatten(1).sum(1) / count).sum(), points)
    flat = gradient.flatten(1)
    return ~torch.isfinite(flat).all(1) | (flat.abs().amax(1) == 0)


def random_vertex(images: torch.Tensor, radius: float, seeds: list[int]) -> torch.Tensor:
    """x + radius * s, s a random sign per component from each image's own seed, clipped to [0, 1]."""
    signs = torch.stack([torch.randint(0, 2, images.shape[1:], generator=torch.Generator().manual_seed(seed))
                         for seed in seeds]).to(device=images.device, dtype=images.dtype)
    return (images + radius * (2 * signs - 1)).clamp(0, 1)


def unconstrained_variant(attack):
    """The configured attack with a small budget, to run at eps = 1 (None where it has no budget option)."""
    from dataclasses import replace

    options = dict(attack.options)
    if "iterations" in options or attack.name in ("sea", "apgd", "pgd", "sea_square"):
        options["iterations"] = min(UNCONSTRAINED_ITERATIONS, int(options.get("iterations", UNCONSTRAINED_ITERATIONS)))
    if "queries" in options or attack.name == "square":
        options["queries"] = min(10 * UNCONSTRAINED_ITERATIONS, int(options.get("queries", 100)))
    if "step_size" in options:
        iterations = options.get("iterations", UNCONSTRAINED_ITERATIONS)
        options["step_size"] = short_pgd_step_size(UNCONSTRAINED_EPS, iterations)
    options.pop("restarts", None)
    return replace(attack, options=options)


class Diagnostics:
    """Per-image check values of an evaluation, kept by dataset index (resumable, mergeable across shards)."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        self.indices: list[int] = []
        self.gradient_unusable: list[bool] = []
        self.unconstrained_acc: list[float] = []
        self.noise_acc: dict[str, list[float]] = {key: [] for key in keys}
        self.white_acc: dict[str, list[float]] = {key: [] for key in keys}
        self.late: dict[str, list[bool]] = {}
        self.square_improved: dict[str, list[bool]] = {}
        self.randomized: list[bool] = []
        self.seconds = 0.0

    def on_batch(self, model, attack, images, labels, indices: list[int], radii: list[tuple[float, str]],
                 results: dict, seed: int) -> None:
        """Checks of one batch; ``results``: the attack's AttackResult per radius key."""
        started = time.perf_counter()
        self.indices += list(indices)
        with torch.no_grad():  # two clean forwards: a randomized model answers differently
            first, second = predicted_classes(model(images)), predicted_classes(model(images))
        self.randomized += (first != second).flatten(1).any(1).cpu().tolist()
        self.gradient_unusable += clean_gradient_unusable(model, images, labels).cpu().tolist()
        with torch.enable_grad():
            unconstrained = unconstrained_variant(attack).run(model, images, labels, eps=UNCONSTRAINED_EPS,
                                                              seed=(seed, 999_983), image_indices=indices)
        self.unconstrained_acc += unconstrained.accuracy.double().cpu().tolist()
        for radius_index, (radius, key) in enumerate(radii):
            result = results[key]
            self.white_acc[key] += result.accuracy.double().cpu().tolist()
            if radius > 0:
                probe = random_vertex(images, radius, [mix_seed(seed, radius_index, 4_001, i) for i in indices])
                with torch.no_grad():
                    accuracy = pixel_accuracy(predicted_classes(model(probe)), labels)
                self.noise_acc[key] += (100 * accuracy.double().cpu()).tolist()
            else:
                self.noise_acc[key] += result.accuracy.double().cpu().tolist()
            for name, store in (("late_improvement", self.late), ("square_improved", self.square_improved)):
                if name in result.extras:
                    store.setdefault(key, []).extend(bool(v) for v in result.extras[name].cpu().tolist())
        self.seconds += time.perf_counter() - started

    def state_dict(self) -> dict:
        return {"keys": self.keys, "indices": self.indices, "gradient_unusable": self.gradient_unusable,
                "unconstrained_acc": self.unconstrained_acc, "noise_acc": self.noise_acc,
                "white_acc": self.white_acc, "late": self.late, "square_improved": self.square_improved,
                "randomized": self.randomized, "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict) -> "Diagnostics":
        diagnostics = cls(list(state["keys"]))
        for name in ("indices", "gradient_unusable", "unconstrained_acc", "noise_acc", "white_acc", "late",
                     "square_improved", "seconds"):
            setattr(diagnostics, name, state[name])
        diagnostics.randomized = list(state.get("randomized", []))  # states written before the check: unknown
        return diagnostics

    @classmethod
    def merged(cls, parts: list["Diagnostics"]) -> "Diagnostics":
        """Shards as one: per-image values in dataset order, seconds summed."""
        merged = cls(parts[0].keys)
        indices = [i for part in parts for i in part.indices]
        order = sorted(range(len(indices)), key=indices.__getitem__)

        def join(lists):
            values = [v for values in lists for v in values]
            return [values[i] for i in order] if len(values) == len(indices) else values

        merged.indices = [indices[i] for i in order]
        merged.gradient_unusable = join(p.gradient_unusable for p in parts)
        merged.unconstrained_acc = join(p.unconstrained_acc for p in parts)
        merged.randomized = join(p.randomized for p in parts)
        for name in ("noise_acc", "white_acc", "late", "square_improved"):
            keys = list(dict.fromkeys(k for p in parts for k in getattr(p, name)))
            setattr(merged, name, {k: join(getattr(p, name).get(k, []) for p in parts) for k in keys})
        merged.seconds = sum(p.seconds for p in parts)
        return merged

    def summary(self, attack_seconds: float, attack=None) -> dict:
        """The checks, each {'status': 'ok'|'flag'|'n/a', 'value', 'detail'}, and their cost; ``attack`` (the
        resolved attack) lets a flag name its likely cause."""
        images = len(self.indices)
        checks = {}
        bad = sum(self.gradient_unusable)
        checks["unavailable_gradients"] = {
            "status": "flag" if bad else "ok", "value": bad / max(images, 1),
            "detail": f"{bad} of {images} images have a zero, NaN or inf input gradient at the clean point"
                      + (BPDA_REMEDY if bad else "")}
        if self.late:
            key = self.keys[-1]
            late = self.late.get(key, [])
            share = sum(late) / max(len(late), 1)
            checks["incomplete_optimisation"] = {
                "status": "flag" if share > LATE_MAX_SHARE else "ok", "value": share,
                "detail": f"{sum(late)} of {len(late)} images still improved by more than one point of accuracy in the last 10% of the iterations at "
                          f"{key} (flag above {100 * LATE_MAX_SHARE:.0f}%: more iterations would likely help)"}
        else:
            checks["incomplete_optimisation"] = {"status": "n/a", "value": None,
                                                 "detail": "the attack does not report its late improvements"}
        acc = sum(self.unconstrained_acc) / max(len(self.unconstrained_acc), 1)
        checks["unconstrained_attack"] = {
            "status": "flag" if acc > UNCONSTRAINED_MAX_ACC else "ok", "value": acc,
            "detail": f"ACC {acc:.1f}% under the same attack at eps = 1 (flag above {UNCONSTRAINED_MAX_ACC:g}%)"
                      + (_budget_hint(attack) if acc > UNCONSTRAINED_MAX_ACC else "")}
        radii = [k for k in self.keys if self.white_acc.get(k)]
        means = [sum(self.white_acc[k]) / len(self.white_acc[k]) for k in radii]
        rising = [f"{a} -> {b}" for (a, b, x, y) in zip(radii, radii[1:], means, means[1:]) if y > x + 1e-9]
        per_image = sum(any(b > a + 1e-9 for a, b in zip(values, values[1:]))
                        for values in zip(*(self.white_acc[k] for k in radii)))
        share = per_image / max(images, 1)
        checks["radius_monotonicity"] = {
            "status": "flag" if rising or share > MONOTONICITY_MAX_SHARE else "ok", "value": share,
            "detail": (f"ACC rises from {', '.join(rising)}; " if rising else "ACC never rises with eps; ")
                      + f"{per_image} of {images} images' accuracy rises with eps somewhere "
                        f"(flag above {100 * MONOTONICITY_MAX_SHARE:.0f}%)"}
        beaten = {k: sum(n < w - 1e-9 for n, w in zip(self.noise_acc[k], self.white_acc[k])) for k in radii}
        square = {k: sum(v) for k, v in self.square_improved.items()}
        total = sum(beaten.values()) + sum(square.values())
        parts = [f"random vertex beat the attack on {n} image(s) at {k}" for k, n in beaten.items() if n]
        parts += [f"Square after SEA lowered {n} image(s) at {k}" for k, n in square.items() if n]
        checks["black_box_beats_white_box"] = {
            "status": "flag" if total else "ok", "value": total,
            "detail": ("; ".join(parts) or "no black-box probe beat the white-box attack on any image")
                      + ("; the attack is itself black-box: a random vertex beating it says it is weak here, not that "
                         "gradients are masked" if total and attack is not None and attack.name == "square" else
                         BPDA_REMEDY + EOT_REMEDY if total else ""),
            **({"square_improved": square} if square else {})}
        varying = sum(self.randomized)
        checks["randomized_model"] = {
            "status": "flag" if varying else "ok", "value": varying / max(len(self.randomized), 1),
            "detail": (f"two clean forwards differ on {varying} of {len(self.randomized)} images: a randomized model, "
                       "whose ACC is one seeded draw per image" + (
                           f"; attacked with EOT over {attack.options['eot_samples']} draws"
                           if attack is not None and attack.options.get("eot_samples", 1) > 1 else EOT_REMEDY))
            if varying else f"two clean forwards agree on all {len(self.randomized)} images"}
        return {"checks": checks, "seconds": self.seconds,
                "cost_fraction": self.seconds / attack_seconds if attack_seconds > 0 else None,
                "flagged": [name for name, check in checks.items() if check["status"] == "flag"]}


def _budget_hint(attack) -> str:
    """Why an unconstrained attack can fail besides masked gradients: its small budget."""
    if attack is None:
        return ""
    options = unconstrained_variant(attack).options
    budget = {key: options[key] for key in ("iterations", "queries") if key in options}
    if not budget:
        return ""
    said = ", ".join(f"{value} {key}" for key, value in budget.items())
    return (f"; it ran with {said}: at a tiny budget the budget is the "
            "likely cause, so rerun with more attack.options.iterations before suspecting masked gradients")


def not_applicable() -> dict:
    return {"checks": {name: {"status": "n/a", "value": None, "detail": _BOUNDED_ONLY} for name in CHECKS},
            "seconds": 0.0, "cost_fraction": None, "flagged": []}


def diagnostics_markdown(diagnostics: dict) -> str:
    """The report's section: one line of verdict and cost, then one row per check."""
    checks = diagnostics["checks"]
    flagged = diagnostics["flagged"]
    cost = diagnostics.get("cost_fraction")
    verdict = (f"{len(flagged)} flagged ({', '.join(flagged)})" if flagged else
               f"all {sum(c['status'] == 'ok' for c in checks.values())} applicable checks ok")
    lines = [f"Diagnostics: {verdict}" + (f"; their cost {diagnostics['seconds']:.1f} s, {100 * cost:.0f}% of the "
                                          "attack's time" if cost is not None else ""), "",
             "| check | status | detail |", "|---|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {check['status']} | {check['detail']} |" for name, check in checks.items()]
    return "\n".join(lines) + "\n"
