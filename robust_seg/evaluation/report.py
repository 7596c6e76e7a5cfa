"""Files and W&B entries of an evaluation: results.json, results.md, plots (SEA paper table layouts)."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import matplotlib.patches

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from robust_seg.evaluation.calibration import calibration_markdown, write_calibration_reports  # noqa: E402
from robust_seg.metrics.apsr import save_failure_curves_png  # noqa: E402
from robust_seg.names import COMPONENT_LABELS, WORST  # noqa: E402
from robust_seg.evaluation.results import EvaluationResults  # noqa: E402
from robust_seg.reporting.files import atomic_write_json, atomic_write_text  # noqa: E402



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


def plot_robustness_curve(results: EvaluationResults, path: Path) -> None:
    """Robust ACC and mIoU of the worst case against the radius (x axis in units of 1/255)."""
    keys = list(results.radii)
    x = [results.radius_values[k] * 255 for k in keys]
    figure, axis = plt.subplots(figsize=(5, 3.5))
    for metric, label in (("acc", "ACC"), ("miou", "mIoU")):
        axis.plot(x, [getattr(results.worst_case(k), metric) for k in keys], marker="o", label=label)
    axis.set_xlabel("radius  $\\epsilon_\\infty$ (x 1/255)")
    axis.set_ylabel("%")
    axis.set_ylim(0, 100)
    axis.set_title(textwrap.fill(f"{results.attack}: {results.model}", 60), fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _colour(mask: torch.Tensor, num_classes: int) -> np.ndarray:
    palette = (plt.get_cmap("tab20")(np.linspace(0, 1, max(num_classes, 2)))[:, :3] * 255).astype(np.uint8)
    array = mask.numpy()
    out = np.zeros(array.shape + (3,), dtype=np.uint8)
    valid = array != 255
    out[valid] = palette[array[valid] % len(palette)]
    out[~valid] = 255
    return out


def plot_attacked_images(figure_data: dict, class_names: list[str], path: Path) -> list[str]:
    """Per image: perturbed images, perturbations (scaled to the radius) and predictions per radius (App. D), with a
    legend of the class colours; returns the legend's entries."""
    keys = [k for k in figure_data if k not in ("images", "labels")]
    images, labels = figure_data["images"], figure_data["labels"]
    count = images.shape[0]
    columns = len(keys) + 1
    figure, axes = plt.subplots(3 * count, columns, figsize=(1.8 * columns, 1.8 * 3 * count), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for i in range(count):
        axes[3 * i, 0].imshow(images[i].permute(1, 2, 0).numpy())
        axes[3 * i, 0].set_title("original", fontsize=7)
        axes[3 * i + 1, 0].imshow(_colour(labels[i], len(class_names)))
        axes[3 * i + 1, 0].set_title("ground truth", fontsize=7)
        for j, key in enumerate(keys, start=1):
            entry = figure_data[key]
            delta = entry["adv"][i] - images[i]
            radius = float(delta.abs().max())
            axes[3 * i, j].imshow(entry["adv"][i].permute(1, 2, 0).clamp(0, 1).numpy())
            axes[3 * i, j].set_title(f"eps {key}" if key != "minimal_norm" else f"norm {255 * radius:.2f}/255",
                                     fontsize=7)
            axes[3 * i + 1, j].imshow(_colour(entry["pred"][i], len(class_names)))
            axes[3 * i + 1, j].set_title(f"Acc: {100 * float(entry['acc'][i]):.1f}%", fontsize=7)
            scaled = (delta / (2 * radius) + 0.5) if radius > 0 else torch.full_like(delta, 0.5)
            axes[3 * i + 2, j].imshow(scaled.clamp(0, 1).permute(1, 2, 0).numpy())
            axes[3 * i + 2, j].set_title("perturbation", fontsize=7)
    palette = _colour(torch.arange(len(class_names)).view(1, -1), len(class_names))[0] / 255.0
    handles = [matplotlib.patches.Patch(color=palette[k], label=name) for k, name in enumerate(class_names)]
    handles.append(matplotlib.patches.Patch(facecolor="white", edgecolor="grey", label="ignored (255)"))
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=7, frameon=False)
    # fixed margins for a grid of bare images with small titles (tight_layout measures every text: ~1 s here)
    height = 1.8 * 3 * count
    figure.subplots_adjust(left=0.01, right=0.99, top=1 - 0.2 / height,
                           bottom=0.03 * (1 + len(handles) // 4) / max(count, 1) + 0.05 / height,
                           wspace=0.08, hspace=0.25)
    figure.savefig(path, dpi=100)
    plt.close(figure)
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
