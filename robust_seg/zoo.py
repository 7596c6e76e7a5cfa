"""``python -m robust_seg.zoo [--dataset NAME]``: the published models that ``model=zoo/<name>`` evaluates.

The entries are listed by ``robust_seg.models.zoo`` (``configs/model/zoo/``) and shown here beside their
published numbers (``robust_seg.reporting.published``). Evaluate one with
``python -m robust_seg.evaluate model=zoo/<name> dataset=<its dataset>``, all of a dataset with
``experiment=zoo_<dataset>`` (a leaderboard: ``scripts/make_table.py zoo_<dataset> <multirun dir>``).
"""
from __future__ import annotations

import argparse

from robust_seg.models.zoo import ZooModel, zoo_models
from robust_seg.reporting.published import paper_numbers, paper_summary


def zoo_table(models: list[ZooModel]) -> str:
    lines = ["| name | dataset | threat model | architecture | paper | checkpoint |", "|---|---|---|---|---|---|"]
    lines += [f"| {m.name} | {m.dataset} | {m.threat_model} | {m.architecture} | "
              f"{paper_summary(paper_numbers(m.paper_reference, m.readme))} | {m.checkpoint} ({m.checkpoint_format}) |"
              for m in models]
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
