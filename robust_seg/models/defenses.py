"""Input-transform defenses as configuration, and the adaptive attacks' view of them (BPDA, EOT).

``model.input_transforms=[{name: quantize, bits: 4}, ...]`` puts transforms in front of the network inside the model
(``DefendedModel``), so that every attack, the diagnostics and the reports see the defended model:

- ``quantize`` (``bits``): rounding to 2^bits levels per channel (bit-depth reduction, Xu et al. 2018);
  non-differentiable (zero gradient almost everywhere).
- ``jpeg`` (``quality``): JPEG compression and decompression (Dziugaite et al. 2016); non-differentiable.
- ``random_resize_pad`` (``max_scale``): resize to a random size in [H, max_scale H] and pad at a random offset to
  max_scale H, then crop and resize the logits back (Xie et al. 2018); randomized, differentiable.
- ``gaussian_noise`` (``std``): additive noise, clipped to [0, 1]; randomized, differentiable.
- ``target``: a callable ``target(**params)`` returning ``transform(images, generator) -> images``; it declares
  ``differentiable`` and ``randomized`` attributes (defaults True and False) and may declare ``approximation``
  (a differentiable function used for BPDA's backward instead of the identity).

BPDA (Athalye et al. 2018, Sec. 4.1): with ``bpda`` on, a non-differentiable transform's backward pass is the
identity (or its declared approximation): the forward value is the transform's, the gradient the approximation's.
EOT (Sec. 4.2): a randomized model is attacked with the mean gradient over ``eot_samples`` draws
(``robust_seg.attacks.pgd.AttackObjective``). Both are switched on for one attack by the attack options
``attack.options.bpda`` and ``attack.options.eot_samples`` (``adaptive``).

Randomness: each draw of image i comes from a generator seeded by (the run's image seed of i, the number of forwards
so far), so that a randomized model's outputs, and hence its reported accuracy, are reproducible per image in any
batch, shard or process. A randomized model's ACC is that of one such draw per image (R = 1, recorded in the
provenance as ``model.input_transforms``).
"""
from __future__ import annotations

import io
from contextlib import contextmanager
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from robust_seg.errors import ConfigError


class InputTransform:
    """``transform(images, generators) -> images``; ``generators``: one torch.Generator per image."""

    name = "transform"
    differentiable = True
    randomized = False

    def __call__(self, images: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        raise NotImplementedError

    def approximation(self, images: torch.Tensor) -> torch.Tensor:
        """BPDA's differentiable stand-in on the backward pass: the identity."""
        return images

    def describe(self) -> str:
        return self.name


class Quantize(InputTransform):
    name, differentiable = "quantize", False

    def __init__(self, bits: int = 4):
        if not 1 <= int(bits) <= 8:
            raise ConfigError(f"model.input_transforms: quantize bits={bits} must be in 1..8")
        self.levels = 2 ** int(bits) - 1
        self.bits = int(bits)

    def __call__(self, images, generators):
        return torch.round(images * self.levels) / self.levels

    def describe(self) -> str:
        return f"quantize({self.bits} bits)"


class Jpeg(InputTransform):
    name, differentiable = "jpeg", False

    def __init__(self, quality: int = 75):
        if not 1 <= int(quality) <= 100:
            raise ConfigError(f"model.input_transforms: jpeg quality={quality} must be in 1..100")
        self.quality = int(quality)

    def __call__(self, images, generators):
        from PIL import Image
        import numpy as np

        out = []
        for image in images.detach():
            array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="JPEG", quality=self.quality)
            decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), dtype=np.float32) / 255
            out.append(torch.from_numpy(decoded).permute(2, 0, 1))
        return torch.stack(out).to(images.device, images.dtype)

    def describe(self) -> str:
        return f"jpeg(quality {self.quality})"


class GaussianNoise(InputTransform):
    name, randomized = "gaussian_noise", True

    def __init__(self, std: float = 0.05):
        if not float(std) > 0:
            raise ConfigError(f"model.input_transforms: gaussian_noise std={std} must be > 0")
        self.std = float(std)

    def __call__(self, images, generators):
        noise = torch.stack([torch.randn(images.shape[1:], generator=g) for g in generators]).to(images.device)
        return (images + self.std * noise.to(images.dtype)).clamp(0, 1)

    def describe(self) -> str:
        return f"gaussian_noise(std {self.std:g})"


class RandomResizePad(InputTransform):
    """Xie et al. 2018 for segmentation: each image resized to a random size in [H, max_scale H] (and W alike),
    padded with zeros at a random offset to max_scale (H, W); the model's logits are cropped back and resized to
    (H, W) (``restore``)."""

    name, randomized = "random_resize_pad", True

    def __init__(self, max_scale: float = 1.15):
        if not float(max_scale) >= 1:
            raise ConfigError(f"model.input_transforms: random_resize_pad max_scale={max_scale} must be >= 1")
        self.max_scale = float(max_scale)

    def draws(self, size: tuple[int, int], generators) -> list[tuple[int, int, int, int]]:
        height, width = size
        full_h, full_w = int(round(height * self.max_scale)), int(round(width * self.max_scale))
        out = []
        for g in generators:
            h = int(torch.randint(height, full_h + 1, (1,), generator=g))
            w = int(round(h * width / height))
            w = min(max(w, width), full_w)
            top = int(torch.randint(0, full_h - h + 1, (1,), generator=g))
            left = int(torch.randint(0, full_w - w + 1, (1,), generator=g))
            out.append((h, w, top, left))
        return out

    def apply(self, model: Callable, images: torch.Tensor, generators) -> torch.Tensor:
        height, width = images.shape[-2:]
        full_h, full_w = int(round(height * self.max_scale)), int(round(width * self.max_scale))
        draws = self.draws((height, width), generators)
        padded = torch.cat([F.pad(F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False),
                                  (left, full_w - w - left, top, full_h - h - top))
                            for image, (h, w, top, left) in zip(images, draws)])
        logits = model(padded)  # one forward for the batch: every padded image has the same size
        return torch.cat([F.interpolate(logits[i:i + 1, :, top:top + h, left:left + w], size=(height, width),
                                        mode="bilinear", align_corners=False)
                          for i, (h, w, top, left) in enumerate(draws)])

    def describe(self) -> str:
        return f"random_resize_pad(max scale {self.max_scale:g})"


class _Custom(InputTransform):
    def __init__(self, target: str, function: Callable):
        self.function, self.target = function, target
        self.name = target
        self.differentiable = bool(getattr(function, "differentiable", True))
        self.randomized = bool(getattr(function, "randomized", False))
        approximation = getattr(function, "approximation", None)
        if approximation is not None:
            self.approximation = approximation

    def __call__(self, images, generators):
        try:
            return self.function(images, generators)
        except TypeError:
            return self.function(images)


TRANSFORMS = {"quantize": Quantize, "jpeg": Jpeg, "gaussian_noise": GaussianNoise,
              "random_resize_pad": RandomResizePad}


def build_transform(spec: Any) -> InputTransform:
    """One entry of ``model.input_transforms``: ``{name: quantize, bits: 4}`` or ``{target: pkg.fn, ...params}``."""
    spec = dict(spec) if not isinstance(spec, str) else {"name": spec}
    if "target" in spec:
        from robust_seg.models.external import resolve_callable

        target = spec.pop("target")
        return _Custom(target, resolve_callable(target)(**spec))
    name = spec.pop("name", None)
    if name not in TRANSFORMS:
        raise ConfigError(f"model.input_transforms: unknown transform {name!r} (choose from "
                          f"{', '.join(TRANSFORMS)}, or give target=<module.function>)")
    try:
        return TRANSFORMS[name](**spec)
    except TypeError as error:
        raise ConfigError(f"model.input_transforms: {name}: {error}") from None


class DefendedModel(nn.Module):
    """``model`` behind ``transforms``: the image transforms apply to the images in the order given;
    ``random_resize_pad`` acts around the network (its input and its logits). ``bpda`` / ``eot_samples`` are set by
    ``adaptive`` for one attack; ``image_seeds`` by the attack registry for one batch (default: seeds 0..B-1)."""

    def __init__(self, model: nn.Module, transforms: list[InputTransform]):
        super().__init__()
        self.model = model
        self.transforms = transforms
        self.bpda = False
        self.eot_samples = 1
        self.image_seeds: list[int] | None = None
        self.forwards = 0
        self.num_classes = getattr(model, "num_classes", None)
        self.weights = getattr(model, "weights", None)

    @property
    def randomized(self) -> bool:
        return any(t.randomized for t in self.transforms)

    def describe(self) -> str:
        return " -> ".join(t.describe() for t in self.transforms)

    def _generators(self, batch: int) -> list[torch.Generator]:
        seeds = self.image_seeds if self.image_seeds is not None and len(self.image_seeds) == batch \
            else list(range(batch))
        self.forwards += 1
        return [torch.Generator().manual_seed((int(s) * 1_000_003 + self.forwards) % (2**63 - 1)) for s in seeds]

    def forward(self, images: torch.Tensor, *args, **kwargs):
        generators = self._generators(images.shape[0])
        network: Callable = lambda x: self.model(x, *args, **kwargs)  # noqa: E731
        for transform in self.transforms:
            if isinstance(transform, RandomResizePad):
                inner, current = network, transform
                network = (lambda x, inner=inner, current=current:  # noqa: E731
                           current.apply(inner, x, generators))
                continue
            transformed = transform(images, generators)
            if not transform.differentiable and self.bpda and torch.is_grad_enabled() and images.requires_grad:
                approximation = transform.approximation(images)
                images = approximation + (transformed - approximation).detach()
            else:
                images = transformed
        return network(images)


def defend(model: nn.Module, specs) -> nn.Module:
    """``model`` behind the transforms of ``specs`` (``model.input_transforms``); ``model`` itself without any."""
    transforms = [build_transform(spec) for spec in (specs or [])]
    return DefendedModel(model, transforms) if transforms else model


@contextmanager
def adaptive(model: nn.Module, *, bpda: bool = False, eot_samples: int = 1, image_seeds: list[int] | None = None):
    """For one attack: BPDA on the model's non-differentiable transforms, EOT over ``eot_samples`` draws, and the
    batch's per-image seeds of the model's randomness."""
    if not isinstance(model, DefendedModel):  # a randomized module of the user's own (e.g. test-time dropout)
        if eot_samples == 1:
            yield model
            return
        model.eot_samples = eot_samples
        try:
            yield model
        finally:
            del model.eot_samples
        return
    saved = (model.bpda, model.eot_samples, model.image_seeds)
    model.bpda, model.eot_samples = bpda, eot_samples
    if image_seeds is not None:
        model.image_seeds = image_seeds
    try:
        yield model
    finally:
        model.bpda, model.eot_samples, model.image_seeds = saved
