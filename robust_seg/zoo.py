"""``python -m robust_seg.zoo [--dataset NAME]``: the published models that ``model=zoo/<name>`` evaluates.

The zoo is the config group ``configs/model/zoo/``: one file per released checkpoint, each extending the model
config of its architecture with the checkpoint URL, its format (converted on loading), the dataset it was
trained for, its threat model and the key of its paper's numbers (``robust_seg.reporting.published``). Weights
are downloaded once into the hash-checked cache (``robust_seg.models.download``). Evaluate one with
``python -m robust_seg.evaluate model=zoo/<name> dataset=<its dataset>``, all of a dataset with
``experiment=zoo_<dataset>`` (a leaderboard: ``scripts/make_table.py zoo_<dataset> <multirun dir>``).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parents[1] / "configs" / "model" / "zoo"


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry as listed: name, architecture config, dataset, threat model, weights and paper numbers."""

    name: str
    architecture: str
    dataset: str
    threat_model: str
    training: str
    checkpoint: str
    checkpoint_format: str
    paper: dict | None

    def paper_summary(self) -> str:
        """The published clean and 8/255 numbers in words, each source named, e.g.
        ``paper: mIoU 75.2 clean, 37.0 at 8/255; README: mIoU 75.2 clean, 34.6 at 8/255``."""
        if not self.paper:
            return "–"
        if "minimal_norm" in self.paper:
            median, mean = self.paper["minimal_norm"]["untargeted"]["alma_prox"]
            return f"ALMA prox ‖δ‖∞ x255 median {median:.2f}, mean {mean:.2f}"
        parts = []
        for numbers in [self.paper, *self.paper.get("also", [])]:
            radii = numbers["radii"]
            metric = "miou" if any(v["miou"] is not None for v in radii.values()) else "acc"
            shown = [f"{v[metric]:.1f} {'clean' if k == '0' else 'at ' + k}" for k, v in radii.items()
                     if v[metric] is not None and k in ("0", "8/255")]
            source = "README" if "README" in numbers["source"] else "paper"
            parts.append(f"{source}: {'mIoU' if metric == 'miou' else 'ACC'} " + ", ".join(shown))
        return "; ".join(parts)


def zoo_models(dataset: str | None = None) -> list[ZooModel]:
    """Every entry of ``configs/model/zoo/`` (of ``dataset`` only, if given), sorted by dataset and name."""
    from omegaconf import OmegaConf

    from robust_seg.reporting.published import paper_numbers

    models = []
    for path in sorted(ZOO_DIR.glob("*.yaml")):
        entry = OmegaConf.load(path)
        architecture = next(str(d).split("@")[0].removeprefix("/model/") for d in entry.defaults if d != "_self_")
        models.append(ZooModel(name=path.stem, architecture=architecture, dataset=entry.zoo.dataset,
                               threat_model=entry.zoo.threat_model, training=entry.zoo.training,
                               checkpoint=entry.checkpoint, checkpoint_format=entry.checkpoint_format,
                               paper=paper_numbers(entry.zoo.get("paper"), entry.zoo.get("readme"))))
    models.sort(key=lambda m: (m.dataset, m.name))
    return [m for m in models if dataset is None or m.dataset == dataset]


def zoo_table(models: list[ZooModel]) -> str:
    lines = ["| name | dataset | threat model | architecture | paper | checkpoint |", "|---|---|---|---|---|---|"]
    lines += [f"| {m.name} | {m.dataset} | {m.threat_model} | {m.architecture} | {m.paper_summary()} | "
              f"{m.checkpoint} ({m.checkpoint_format}) |" for m in models]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robust_seg.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="only the models of this dataset (pascal_voc, ade20k, cityscapes)")
    args = parser.parse_args(argv)
    models = zoo_models(args.dataset)
    if not models:
        known = sorted({m.dataset for m in zoo_models()})
        parser.exit(2, f"error: no zoo model for dataset {args.dataset!r} (choose from: {', '.join(known)})\n")
    print(zoo_table(models))
    print("\nEvaluate one: python -m robust_seg.evaluate model=zoo/<name> dataset=<its dataset> attack=sea")


if __name__ == "__main__":
    main()
