"""Models from outside the project's configs: a user's PyTorch factory or a user's MMSegmentation config file.

- ``model=custom model.target=my_package.my_factory``: a callable (``module.function`` or ``module:function``)
  returning an ``nn.Module`` that maps images in [0, 1] (B, 3, H, W) to logits (B, K, H, W). Normalisation is the
  module's business, or ``model.mean`` / ``model.std`` (the ``custom`` config sets none: mean 0, std 1).
  ``model.checkpoint`` (optional) is loaded into it strictly (a plain state dict).
- ``model=mmseg_config model.config=path/to/config.py``: the ``model`` of an MMSegmentation config file, built
  through MMSeg's registry as the project's own models are (its ``data_preprocessor`` mean/std become the
  wrapper's normalisation); ``model.checkpoint`` as for any MMSeg model.

Every model is checked once before an evaluation (:func:`check_model_output`): the logits of a test batch must
have the input's spatial size, the dataset's class count, and finite values; each failure is one line.
"""
from __future__ import annotations

import importlib

import torch
from torch import nn

from robust_seg.errors import CheckpointError, ConfigError


class ExternalModel(nn.Module):
    """A user's module behind the project's model interface (``num_classes``, ``weights``, images in [0, 1])."""

    def __init__(self, module: nn.Module, num_classes: int, mean, std):
        super().__init__()
        self.module = module
        self.num_classes = num_classes
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.weights: dict = {"source": "random", "checkpoint": None, "sha256": None, "backbone": None}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.module((images - self.mean) / self.std)


def resolve_callable(target: str):
    """``package.module.function`` or ``package.module:function`` -> the callable, or a one-line ConfigError."""
    module_name, _, attribute = target.replace(":", ".").rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ConfigError(f"model.target={target}: cannot import it ({error}); give package.module.function of a "
                          "callable returning an nn.Module") from None


def build_custom_model(cfg, num_classes: int) -> ExternalModel:
    from robust_seg.models.checkpoints import load_matching, load_state_file

    factory = resolve_callable(cfg.target)
    module = factory()
    if not isinstance(module, nn.Module):
        raise ConfigError(f"model.target={cfg.target} returned a {type(module).__name__}, not an nn.Module")
    model = ExternalModel(module, num_classes, list(cfg.mean), list(cfg.std))
    model.weights = {"source": "factory", "checkpoint": None, "sha256": None, "backbone": None}
    if cfg.checkpoint:
        state, weights = load_state_file(cfg.checkpoint, getattr(cfg, "checkpoint_sha256", None))
        load_matching(module, state, f"checkpoint {cfg.checkpoint}")
        model.weights = {"source": "checkpoint", "checkpoint": weights.location, "sha256": weights.sha256,
                         "backbone": None}
    return model


def mmseg_config_model(cfg) -> tuple[dict, list[float] | None, list[float] | None]:
    """The ``model`` dict of an MMSeg config file, and its data preprocessor's mean/std scaled to [0, 1] images."""
    from pathlib import Path

    path = Path(str(cfg.config)).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.config={cfg.config}: no such MMSegmentation config file")
    from mmengine.config import Config

    try:
        model = Config.fromfile(str(path)).to_dict()["model"]
    except Exception as error:  # syntax errors, missing base files, no 'model' entry
        raise ConfigError(f"model.config={cfg.config}: cannot read it as an MMSegmentation config "
                          f"({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None
    preprocessor = model.get("data_preprocessor") or {}
    mean, std = preprocessor.get("mean"), preprocessor.get("std")
    scale = 255.0 if mean is not None and max(mean) > 1 else 1.0
    return model, (None if mean is None else [m / scale for m in mean]), (None if std is None else [s / scale for s in std])


def check_model_output(model: nn.Module, num_classes: int, device, size: int = 64, what: str = "the model") -> None:
    """One forward of a test batch of two images: logits (2, K, size, size) on the images' device, K = the
    dataset's classes, finite."""
    was_training = model.training
    model.eval()
    batch = torch.full((2, 3, size, size), 0.5, device=device)
    batch[1] = 0.25
    try:
        with torch.no_grad():
            output = model(batch)
    except Exception as error:
        raise CheckpointError(f"{what} fails on a (2, 3, {size}, {size}) batch of images in [0, 1]: "
                              f"{str(error).splitlines()[0] if str(error) else type(error).__name__}") from None
    finally:
        model.train(was_training)
    if not isinstance(output, torch.Tensor) or output.dim() != 4 or tuple(output.shape[-2:]) != (size, size) \
            or output.shape[0] != 2:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise CheckpointError(f"{what} returns {shape} for a (2, 3, {size}, {size}) batch; it must return logits "
                              f"(B, K, H, W) at the input's batch size and image size")
    if output.device != batch.device:
        raise CheckpointError(f"{what} returns logits on {output.device} for images on {batch.device}: it must "
                              f"compute on the images' device (runtime.device={batch.device.type})")
    if output.shape[1] != num_classes:
        raise CheckpointError(f"{what} predicts {output.shape[1]} classes but the dataset has {num_classes}: "
                              "choose the matching dataset or model")
    if not bool(torch.isfinite(output).all()):
        raise CheckpointError(f"{what} returns NaN or infinite logits on a test batch (check its weights)")
