"""The Python API: models, attacks and evaluations without the command line (docs/python_api.md).

    import robust_seg as rs
    model = rs.load_model("embedded")                         # any config of configs/model, or a checkpoint
    result = rs.attacks.sea(model, images, labels, eps=8 / 255, iterations=50)
    results = rs.evaluate(model, dataset="synthetic", attack="sea", eps=["4/255", "8/255"], overrides=["max_images=8"])
    results = rs.evaluate(model, (images, labels), attack="sea", eps=8 / 255)   # your own data

``evaluate`` runs the same driver as ``python -m robust_seg.evaluate`` and returns the same results dictionary
(also written to ``results.json`` in its run directory).

Units, everywhere: a radius is a float in [0, 1] or the papers' string (``8 / 255`` and ``"8/255"`` are one radius;
``8`` is refused); ACC and mIoU are percentages (``AttackResult.accuracy``, ``results.json``, reports, tables).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch


def compose(entry: str = "evaluate", overrides: Sequence[str] = ()):
    """The composed config of ``python -m robust_seg.<entry> overrides`` (checked by the same schemas)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from robust_seg.evaluation.config import EvaluateConfig
    from robust_seg.names import CONFIGS
    from robust_seg.run.config import register_configs
    from robust_seg.training.config import PretrainConfig, TrainConfig

    register_configs(evaluate=EvaluateConfig, train=TrainConfig, pretrain=PretrainConfig)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return hydra_compose(config_name=entry, overrides=list(overrides))


def load_model(name: str = "embedded", *, checkpoint: str | None = None, dataset: str | None = None,
               device: str | torch.device = "cpu", overrides: Iterable[str] = ()) -> torch.nn.Module:
    """A model of ``configs/model/<name>.yaml`` (``zoo/<name>``: a published model, ``python -m robust_seg.zoo``)
    for ``dataset``'s classes (default: a zoo model's own dataset, else ``synthetic``), with ``checkpoint`` (path
    or URL, hash-checked cache) if given, in eval mode without parameter gradients: images in [0, 1] -> logits."""
    from robust_seg.models.config import check_model_config, check_zoo_dataset
    from robust_seg.models import build_model

    if dataset is None:
        from robust_seg.models.zoo import zoo_models

        zoo = {m.name: m for m in zoo_models()}
        dataset = zoo[name[4:]].dataset if name.startswith("zoo/") and name[4:] in zoo else "synthetic"
    cfg = compose("evaluate", [f"model={name}", f"dataset={dataset}", *(
        [f"model.checkpoint={checkpoint}"] if checkpoint else []), *overrides])
    check_model_config(cfg.model, evaluation=True)
    check_zoo_dataset(cfg.model, cfg.dataset)
    model = build_model(cfg.model, cfg.dataset.num_classes).to(device).eval()
    return model.requires_grad_(False)


def load_data(name: str = "synthetic", split: str = "val", overrides: Iterable[str] = ()):
    """The evaluation images of ``configs/dataset/<name>.yaml`` (``split``: val or train), as the command line
    reads them: a Dataset of ``{"image": (3, H, W) in [0, 1], "label": (H, W) with 255 unlabelled, "index",
    "name"}``; ``overrides`` are dataset overrides (e.g. ``"dataset.root=/data/VOCdevkit/VOC2012"``)."""
    from robust_seg.data import build_dataset

    cfg = compose("evaluate", [f"dataset={name}", *overrides])
    chosen = {"val": cfg.dataset.val_split, "train": cfg.dataset.train_split}.get(split, split)
    return build_dataset(cfg.dataset, split=chosen, train=False)


def _radii(eps: Any) -> str:
    values = eps if isinstance(eps, (list, tuple)) else [eps]
    return "[" + ",".join(str(v) if isinstance(v, str) else repr(float(v)) for v in values) + "]"


def evaluate(model: torch.nn.Module | None = None, data: Any = None, *, dataset: str = "synthetic",
             attack: str = "sea", eps: Any = ("0", "4/255", "8/255", "12/255"), class_names: Sequence[str] | None = None,
             ignore_index: int = 255, run_dir: str | Path | None = None, overrides: Iterable[str] = (),
             **options: Any) -> dict:
    """Evaluate ``model`` (a module mapping images in [0, 1] to logits; None: the config's model, by default the
    shipped one) under ``attack`` at the radii ``eps`` (floats or the papers' strings, ``8 / 255`` or ``"8/255"``).

    ``data``: the images, as ``(images, labels)`` tensors, a ``Dataset`` or a ``DataLoader``
    (``robust_seg.data.user``: images in [0, 1], labels with ``ignore_index``, any number of classes, named by
    ``class_names`` if given); None: the configured ``dataset``. ``options`` go to ``attack.options`` (e.g.
    ``iterations=50``), ``overrides`` are any other config overrides (e.g. ``"max_images=8"``). Returns the results
    dictionary of the command line (``results.json``: ACC and mIoU in percent), written with the reports into
    ``run_dir``; W&B is off unless an override turns it on."""
    from robust_seg.evaluation import evaluate as run_evaluation

    settings = [f"dataset={dataset}", f"attack={attack}", f"attack.eps={_radii(eps)}", "logger=none",
                *(f"++attack.options.{key}={value!r}" if isinstance(value, str) else
                  f"++attack.options.{key}={value}" for key, value in options.items())]
    source = None
    if data is not None:
        from robust_seg.data.user import user_data

        source = user_data(data, ignore_index, class_names)
        num_classes = len(source.class_names) if source.class_names else _classes(model, source, dataset)
        source.class_names = source.class_names or [f"class {k}" for k in range(num_classes)]
        settings += [f"dataset.num_classes={num_classes}",
                     *([f"batch_size={source.batch_size}"] if source.batch_size else [])]
    cfg = compose("evaluate", [*settings, *overrides])
    if run_dir is None:
        run_dir = Path("outputs") / "api" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S-%f")
    return run_evaluation(cfg, run_dir, model=model, data=source)


def _classes(model: torch.nn.Module | None, source, dataset: str) -> int:
    """The classes of the user's data: the model's output channels on its first image (the config's model: its
    dataset's classes)."""
    if model is None:
        return int(compose("evaluate", [f"dataset={dataset}"]).dataset.num_classes)
    image = source[0]["image"][None]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad():
        return int(model(image.to(device)).shape[1])
