"""Files and W&B entries of an evaluation: results.json, results.md, plots (SEA paper table layouts)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch

from robust_seg.evaluation.calibration import calibration_markdown, write_calibration_reports
from robust_seg.metrics.apsr import save_failure_curves_png
from robust_seg.names import COMPONENT_LABELS, WORST
from robust_seg.evaluation.results import EvaluationResults
from robust_seg.reporting.files import atomic_write_json, atomic_write_text



def component_label(name: str, attack: str) -> str:
    """``attack (worst case)`` for the worst case, the readable name of a loss or component otherwise."""
    return f"{attack} (worst case)" if name == WORST else COMPONENT_LABELS.get(name, name)


RANDOM_WEIGHTS_BANNER = ("> **RANDOM WEIGHTS**: this model was evaluated without trained weights "
                         "(model.random_weights=true); its numbers say nothing about a trained model.")


def paper_markdown(results: EvaluationResults) -> str:
    """The paper's numbers beside the measured ones, for a zoo model whose paper reports them (bounded attacks:
    the worst case's ACC and mIoU at the radii both have; minimal-norm attacks: the attack's median and mean)."""
    paper = results.paper
    if not paper:
        return ""
    lines = [f"## Paper vs measured ({paper['source']})", ""]
    if results.minimal_norm is not None:
        published = paper.get("minimal_norm", {}).get(paper["scenario"], {}).get(paper["attack"])
        if published is None:
            return ""
        summary = results.minimal_norm
        lines += ["| ‖δ‖∞ x255 | paper | measured |", "|---|---:|---:|",
                  f"| median | {published[0]:.2f} | {summary['median_x255']:.2f} |",
                  f"| mean | {published[1]:.2f} | {summary['mean_x255']:.2f} |"]
        return "\n".join(lines) + "\n"
    sources = [paper, *paper.get("also", [])]
    radii = [key for key in results.radii if any(key in source.get("radii", {}) for source in sources)]
    if not radii:
        return ""

    def cell(value):
        return "–" if value is None else f"{value:.1f}"

    columns = []  # (header, source, metric) for every published column that has a number
    for source in sources:
        label = "README" if "README" in source["source"] else "paper"
        for metric, name in (("acc", "ACC"), ("miou", "mIoU")):
            if any(source["radii"].get(key, {}).get(metric) is not None for key in radii):
                columns.append((f"{label} {name}", source, metric))
    lines[0] = "## Paper vs measured (" + "; ".join(source["source"] for source in sources) + ")"
    lines += ["| eps | " + " | ".join(c[0] for c in columns) + " | measured ACC | measured mIoU |",
              "|---|" + "---:|" * (len(columns) + 2)]
    for key in radii:
        measured = results.worst_case(key)
        published = [cell(source["radii"].get(key, {}).get(metric)) for _, source, metric in columns]
        lines.append(f"| {key} | " + " | ".join(published) + f" | {measured.acc:.1f} | {measured.miou:.1f} |")
    lines += ["", f"Measured on {results.images} {results.dataset} {results.split} images with "
              f"{results.attack}; the paper's SEA uses 4 losses x 300 iterations on the whole split."]
    protocol = (results.provenance or {}).get("dataset", {}).get("protocol")
    if protocol and paper.get("protocol") and protocol["name"] != paper["protocol"]:
        lines += ["", f"**Protocol differs from the paper's code**: measured under `{protocol['name']}`, the paper's "
                      f"code evaluates under `{paper['protocol']}` (dataset.protocol={paper['protocol']})."]
    return "\n".join(lines) + "\n"


def provenance_markdown(results: EvaluationResults) -> str:
    """What made these numbers: weights, data, attack, seeds, software (lines under the title)."""
    record = results.provenance
    if not record:
        return ""
    data, software = record["dataset"], record["software"]
    lines = [f"- model: {record['model']['name']}, weights: {record['model']['label']}",
             f"- data: {data['name']} {data['split']} split, {data['images']} images"
             + (f", root {data['root']}" if data.get("root") else ""),
             *([f"- protocol: {data['protocol']['description']}"] if data.get("protocol") else []),
             f"- attack: {record['attack']['description']}; "
             + (f"radii {', '.join(record['radii'])}; " if record["attack"]["name"] != "corruptions" else "") + "seeds "
             + ", ".join(f"{k} {v}" for k, v in record["seeds"].items()) + f"; batch size {record['batch_size']}",
             f"- software: robust_seg {software['robust_seg']}" + (f" ({software['commit']})" if software.get("commit")
                                                                    else "") + f", torch {software['torch']}"
             + (f", mmseg {software['mmseg']}" if software.get("mmseg") else ""),
             f"- command-line overrides: {' '.join(record['overrides']) or '(none)'}"
             + (" (those of shard 0)" if record.get("shards") else "")]
    if record.get("shards"):
        lines.insert(0, f"- merged from {record['shards']} shards (python -m robust_seg.merge or "
                        "torchrun): every image of the evaluation, each attacked once")
    banner = [RANDOM_WEIGHTS_BANNER, ""] if results.random_weights else []
    return "\n".join(banner + lines) + "\n\n"


def short_weights(results: EvaluationResults) -> str:
    """The weights in a few words for a title (the file's name; random weights said so): the runs of a grid over
    models with the same architecture (e.g. the shipped robust model and its clean twin) get different titles."""
    model = results.provenance.get("model", {})
    if model.get("checkpoint"):
        return Path(str(model["checkpoint"])).name
    return "RANDOM WEIGHTS" if results.random_weights else results.weights


def results_markdown(results: EvaluationResults) -> str:
    """Rows: the attack's components then its worst case; columns: ACC and mIoU per radius (Tables 1, 3, 9)."""
    keys = list(results.radii)
    names = list(dict.fromkeys(n for key in keys for n in results.radii[key] if n != WORST)) + [WORST]
    header = "| attack | " + " | ".join(f"{k} ACC | {k} mIoU" for k in keys) + " |"
    rule = "|---|" + "---:|---:|" * len(keys)
    lines = [f"# {results.attack} on {results.model} ({short_weights(results)}) / {results.dataset} "
             f"({results.split}, {results.images} images)", "", provenance_markdown(results).rstrip("\n"), ""]
    if results.attack_note:
        lines += [f"> {results.attack_note}", ""]
    lines += [header, rule]
    for name in names:
        cells = []
        for key in keys:
            entry = results.radii[key].get(name)
            cells.append(f"{entry.acc:.1f} | {entry.miou:.1f}" if entry else "– | –")
        lines.append(f"| {component_label(name, results.attack)} | " + " | ".join(cells) + " |")
    lines += ["", "Per-class IoU of the worst case:", "",
              "| class | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    classes = list(results.worst_case(keys[0]).per_class_iou)
    for cls in classes:
        values = [results.worst_case(k).per_class_iou[cls] for k in keys]
        lines.append(f"| {cls} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in values) + " |")
    if results.not_fooled_percentage:
        shown = ", ".join(f"{k}: {v:.1f}%" for k, v in results.not_fooled_percentage.items() if k != "0")
        if shown:
            lines += ["", f"Images not fooled (APSR < 99% of their labelled pixels misclassified): {shown}"]
    unlabelled = results.worst_case(keys[0]).unlabelled_images
    if unlabelled:
        lines += ["", f"{unlabelled} image(s) without any labelled pixel are left out of ACC."]
    lines += ["", f"Wall time: {results.seconds:.1f} s"]
    return "\n".join(lines) + "\n"


def preload_plotting() -> None:
    """Import what every report draws its figures with (matplotlib's Figure and Agg canvas: about 0.6 s).

    Rank 0 of a sharded evaluation (torchrun, ``runtime.processes``) calls this when its own shard is done, before it waits for the other shards:
    the import then overlaps their last batches instead of delaying the merged report after them."""
    import importlib

    for module in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        importlib.import_module(module)


def plot_robustness_curve(results: EvaluationResults, path: Path) -> None:
    """Robust ACC and mIoU of the worst case against the radius (x axis in units of 1/255)."""
    from matplotlib.figure import Figure  # imported when a figure is drawn: a run that draws none never loads it

    keys = list(results.radii)
    x = [results.radius_values[k] * 255 for k in keys]
    figure = Figure(figsize=(5, 3.5))
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.14, top=0.88)  # fixed: a layout engine costs 0.1 s
    axis = figure.add_subplot()
    for metric, label in (("acc", "ACC"), ("miou", "mIoU")):
        axis.plot(x, [getattr(results.worst_case(k), metric) for k in keys], marker="o", label=label)
    axis.set_xlabel("radius  $\\epsilon_\\infty$ (x 1/255)")
    axis.set_ylabel("%")
    axis.set_ylim(0, 100)
    axis.set_title(textwrap.fill(f"{results.attack}: {results.model}", 60), fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=120)


def _palette(num_classes: int) -> np.ndarray:
    """One colour (uint8 RGB) per class, from matplotlib's tab20."""
    from matplotlib import colormaps

    return (colormaps["tab20"](np.linspace(0, 1, max(num_classes, 2)))[:, :3] * 255).astype(np.uint8)


def _colour(mask: torch.Tensor, palette: np.ndarray) -> np.ndarray:
    array = mask.numpy()
    out = np.full(array.shape + (3,), 255, dtype=np.uint8)  # white: ignored (255)
    valid = array != 255
    out[valid] = palette[array[valid] % len(palette)]
    return out


def plot_attacked_images(figure_data: dict, class_names: list[str], path: Path) -> list[str]:
    """Per image: perturbed images, perturbations (scaled to the radius) and predictions per radius (App. D), with a
    legend of the class colours; returns the legend's entries.

    The panels are tiles of one image drawn in one axes (a grid of axes costs about a second per figure)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    keys = [k for k in figure_data if k not in ("images", "labels")]
    images, labels = figure_data["images"], figure_data["labels"]
    count, columns = images.shape[0], len(keys) + 1
    height, width = images.shape[-2:]
    gap_x, gap_y = max(width // 8, 2), max(height // 4, 6)  # room between tiles, and above each for its title
    tile_h, tile_w = height + gap_y, width + gap_x
    canvas = np.full((3 * count * tile_h, columns * tile_w, 3), 255, dtype=np.uint8)
    titles = []
    palette = _palette(len(class_names))

    def place(row: int, column: int, tile: torch.Tensor | np.ndarray, title: str) -> None:
        if isinstance(tile, torch.Tensor):  # (3, H, W) in [0, 1]
            tile = (tile.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        top, left = row * tile_h + gap_y, column * tile_w + gap_x // 2
        canvas[top:top + height, left:left + width] = tile
        titles.append((left + width / 2, top - 1, title))

    for i in range(count):
        place(3 * i, 0, images[i], "original")
        place(3 * i + 1, 0, _colour(labels[i], palette), "ground truth")
        for j, key in enumerate(keys, start=1):
            entry = figure_data[key]
            delta = entry["adv"][i] - images[i]
            radius = float(delta.abs().max())
            place(3 * i, j, entry["adv"][i], f"eps {key}" if key != "minimal_norm" else f"norm {255 * radius:.2f}/255")
            place(3 * i + 1, j, _colour(entry["pred"][i], palette), f"Acc: {100 * float(entry['acc'][i]):.1f}%")
            scaled = (delta / (2 * radius) + 0.5) if radius > 0 else torch.full_like(delta, 0.5)
            place(3 * i + 2, j, scaled, "perturbation")
    handles = [Patch(color=palette[k] / 255.0, label=name) for k, name in enumerate(class_names)]
    handles.append(Patch(facecolor="white", edgecolor="grey", label="ignored (255)"))
    legend_rows = (len(handles) + 3) // 4
    figure_width = 1.8 * columns
    grid_height = figure_width * canvas.shape[0] / canvas.shape[1]
    legend_height = 0.2 * legend_rows + 0.1
    total_height = grid_height + legend_height
    figure = Figure(figsize=(figure_width, total_height))
    axis = figure.add_axes((0, legend_height / total_height, 1, grid_height / total_height))
    axis.imshow(canvas, interpolation="nearest")
    axis.axis("off")
    for x, y, title in titles:
        axis.text(x, y, title, ha="center", va="bottom", fontsize=7)
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    figure.savefig(path, dpi=100)
    return [handle.get_label() for handle in handles]


def minimal_norm_markdown(results: EvaluationResults) -> str:
    """Thesis Table 5.1 (norms x 255), Table IV-2 (cost per image) and SEA App. C.4 (% not fooled at eps)."""
    summary = results.minimal_norm
    cost = summary["complexity"]
    lines = [f"# {results.attack} on {results.model} / {results.dataset} ({results.split}, "
             f"{results.images} images)", "", provenance_markdown(results).rstrip("\n"), "",
             "| attack | median ‖δ‖∞ x255 | mean ‖δ‖∞ x255 | success (APSR >= 99%) | ACC | mIoU |",
             "|---|---:|---:|---:|---:|---:|",
             f"| {results.attack} | {summary['median_x255']:.2f} | {summary['mean_x255']:.2f} | "
             f"{100 * summary['success_rate']:.1f}% | {summary['adversarial']['acc']:.1f} | "
             f"{summary['adversarial']['miou']:.1f} |", "",
             "Failures count as 255/255 in the norms. Cost per image:", "",
             "| forwards | backwards | seconds |", "|---:|---:|---:|",
             f"| {cost['forwards']:.0f} | {cost['backwards']:.0f} | {cost['seconds_per_image']:.3f} |", "",
             "Images not brought to APSR >= 99% within eps (SEA paper App. C.4):", "",
             "| eps | " + " | ".join(summary["not_fooled_percentage"]) + " |",
             "|---|" + "---:|" * len(summary["not_fooled_percentage"]),
             "| % | " + " | ".join(f"{v:.1f}" for v in summary["not_fooled_percentage"].values()) + " |"]
    return "\n".join(lines) + "\n"


def _paper_section(results: EvaluationResults) -> str:
    text = paper_markdown(results)
    return "\n" + text if text else ""


def _diagnostics_section(results: EvaluationResults) -> str:
    from robust_seg.evaluation.diagnostics import diagnostics_markdown

    return "\n" + diagnostics_markdown(results.diagnostics) if results.diagnostics else ""


def _calibration_section(results: EvaluationResults) -> str:
    return "\n" + calibration_markdown(results.calibration, results.model) if results.calibration is not None else ""


def write_reports(results: EvaluationResults, run_dir: Path, figure_data: dict | None, class_names: list[str],
                  logger) -> str:
    """Write results.json, results.md, plots and W&B entries; return the Markdown report."""
    atomic_write_json(run_dir / "results.json", results.as_dict())
    if results.calibration is not None:
        write_calibration_reports(results.calibration, run_dir, logger)
    if results.minimal_norm is not None:
        return _write_minimal_norm_reports(results, run_dir, figure_data, class_names, logger)
    if results.corruptions is not None:
        from robust_seg.evaluation.corruption_report import write_corruption_reports

        return write_corruption_reports(results, run_dir, provenance_markdown(results), logger)
    markdown = results_markdown(results) + _paper_section(results) + _diagnostics_section(results) \
        + _calibration_section(results)
    atomic_write_text(run_dir / "results.md", markdown)
    plot_robustness_curve(results, run_dir / "robustness_curve.png")
    if figure_data is not None:
        plot_attacked_images(figure_data, class_names, run_dir / "attacked_images.png")
    keys = list(results.radii)
    rows = [[component_label(name, results.attack), key, entry.acc, entry.miou]
            for key in keys for name, entry in results.radii[key].items()]
    logger.table("results", ["attack", "eps", "ACC", "mIoU"], rows)
    logger.summary({f"{WORST}/{metric}@{key}": getattr(results.worst_case(key), metric)
                    for key in keys for metric in ("acc", "miou")})
    if results.diagnostics:
        logger.summary({f"diagnostics/{name}": check["status"]
                        for name, check in results.diagnostics["checks"].items()})
    logger.image("robustness_curve", run_dir / "robustness_curve.png")
    if figure_data is not None:
        logger.image("attacked_images", run_dir / "attacked_images.png")
        last = keys[-1]
        logger.segmentation_images(f"predictions@{last}", figure_data[last]["adv"], figure_data[last]["pred"],
                                   figure_data["labels"], class_names)
    return markdown


def _write_minimal_norm_reports(results: EvaluationResults, run_dir: Path, figure_data: dict | None,
                                class_names: list[str], logger) -> str:
    summary = results.minimal_norm
    markdown = minimal_norm_markdown(results) + _paper_section(results) + _calibration_section(results)
    atomic_write_text(run_dir / "results.md", markdown)
    save_failure_curves_png({results.attack: summary["curve"]}, str(run_dir / "failure_curve.png"),
                            title=f"{results.model} / {results.dataset}")
    if figure_data is not None:
        plot_attacked_images(figure_data, class_names, run_dir / "attacked_images.png")
        logger.image("attacked_images", run_dir / "attacked_images.png")
    logger.summary({k: summary[k] for k in ("median_x255", "mean_x255", "success_rate")})
    logger.table("not_fooled", ["eps", "percentage"], [[e, p] for e, p in zip(
        summary["curve"]["eps"], summary["curve"]["percentage"])])
    logger.image("failure_curve", run_dir / "failure_curve.png")
    return markdown
