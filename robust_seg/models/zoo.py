"""The zoo: the published models that ``model=zoo/<name>`` evaluates, as listed in ``configs/model/zoo/``.

One file per released checkpoint, each extending the model config of its architecture with the checkpoint URL,
its format (converted on loading), the dataset it was trained for, its threat model and where its published
numbers are (``paper``: a key of ``robust_seg.reporting.published``; ``readme``: the official README's mIoU).
Weights are downloaded once into the hash-checked cache (``robust_seg.models.download``). This module lists the
entries; the published numbers are read by ``robust_seg.reporting`` (the zoo does not depend on reporting).
"""
from __future__ import annotations

from dataclasses import dataclass

from robust_seg.names import ZOO_DIR


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry as listed: name, architecture config, dataset, threat model, weights and where its published
    numbers are (``paper_reference``, ``readme``; ``robust_seg.reporting.published.paper_numbers`` reads them)."""

    name: str
    architecture: str
    dataset: str
    threat_model: str
    training: str
    checkpoint: str
    checkpoint_format: str
    paper_reference: str | None
    readme: dict | None


def zoo_models(dataset: str | None = None) -> list[ZooModel]:
    """Every entry of ``configs/model/zoo/`` (of ``dataset`` only, if given), sorted by dataset and name."""
    from omegaconf import OmegaConf

    models = []
    for path in sorted(ZOO_DIR.glob("*.yaml")):
        entry = OmegaConf.load(path)
        architecture = next(str(d).split("@")[0].removeprefix("/model/") for d in entry.defaults if d != "_self_")
        readme = entry.zoo.get("readme")
        models.append(ZooModel(name=path.stem, architecture=architecture, dataset=entry.zoo.dataset,
                               threat_model=entry.zoo.threat_model, training=entry.zoo.training,
                               checkpoint=entry.checkpoint, checkpoint_format=entry.checkpoint_format,
                               paper_reference=entry.zoo.get("paper"),
                               readme=OmegaConf.to_container(readme) if readme is not None else None))
    models.sort(key=lambda m: (m.dataset, m.name))
    return [m for m in models if dataset is None or m.dataset == dataset]
