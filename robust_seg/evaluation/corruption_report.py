"""The reports of a common-corruptions evaluation (``attack=corruptions``): results.md with ACC and mIoU per
corruption and severity, their means, the corruption errors against a reference run, the cost of each corruption,
and a plot of mIoU against severity per corruption family (Hendrycks & Dietterich 2019, Fig. 3)."""
from __future__ import annotations

from pathlib import Path

from robust_seg.compat.corruptions import FAMILIES
from robust_seg.reporting.files import atomic_write_text

PLOT = "corruptions.png"


def corruption_markdown(results, provenance_text: str) -> str:
    summary = results.corruptions
    severities = summary["severities"]
    lines = [f"# {results.attack} on {results.model} / {results.dataset} ({results.split}, {results.images} images)",
             "", provenance_text.rstrip("\n"), "",
             "| corruption | " + " | ".join(f"s{s} ACC | s{s} mIoU" for s in severities) + " | mean ACC | mean mIoU |"
             + (" CE (ACC) | CE (mIoU) |" if "ce" in summary else ""),
             "|---|" + "---:|---:|" * len(severities) + "---:|---:|" + ("---:|---:|" if "ce" in summary else "")]
    for name in summary["corruptions"]:
        row = summary["table"][name]
        cells = [f"{row[str(s)]['acc']:.1f} | {row[str(s)]['miou']:.1f}" for s in severities]
        mean = summary["mean"].get(name)
        cells.append(f"{mean['acc']:.1f} | {mean['miou']:.1f}" if mean else "– | –")
        if "ce" in summary:
            cells.append(f"{summary['ce'][name]['acc']:.1f} | {summary['ce'][name]['miou']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if summary["overall"]:
        lines += ["", f"Mean over the corruptions and severities 1-5 shown: ACC {summary['overall']['acc']:.1f}, "
                      f"mIoU {summary['overall']['miou']:.1f}."]
    if "mce" in summary:
        lines += ["", f"mCE against {summary['reference']}: {summary['mce']['acc']:.1f}% (errors 100 - ACC), "
                      f"{summary['mce']['miou']:.1f}% (100 - mIoU)."]
    cost = {}
    for key, seconds in summary.get("seconds", {}).items():
        cost[key.split("/")[0]] = cost.get(key.split("/")[0], 0.0) + seconds
    if cost:
        slowest = sorted(cost.items(), key=lambda item: -item[1])
        lines += ["", "Corruption time (all severities, all images): " + ", ".join(
            f"{name} {seconds:.1f} s" for name, seconds in slowest)]
    lines += ["", f"Wall time: {results.seconds:.1f} s"]
    return "\n".join(lines) + "\n"


def plot_corruptions(results, path: Path) -> None:
    """mIoU against severity, one panel per family (extra corruptions in a fifth), one line per corruption."""
    from matplotlib.figure import Figure  # imported when the figure is drawn

    summary = results.corruptions
    severities = summary["severities"]
    groups = {family: [n for n in names if n in summary["corruptions"]] for family, names in FAMILIES.items()}
    extra = [n for n in summary["corruptions"] if not any(n in names for names in FAMILIES.values())]
    if extra:
        groups["extra"] = extra
    groups = {family: names for family, names in groups.items() if names}
    figure = Figure(figsize=(3.2 * len(groups), 3), layout="tight")
    axes = figure.subplots(1, len(groups), squeeze=False, sharey=True)
    for axis, (family, names) in zip(axes[0], groups.items()):
        for name in names:
            axis.plot(severities, [summary["table"][name][str(s)]["miou"] for s in severities], marker="o", label=name)
        axis.set_title(family, fontsize=9)
        axis.set_xlabel("severity")
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=6)
    axes[0][0].set_ylabel("mIoU (%)")
    figure.savefig(path, dpi=110)


def write_corruption_reports(results, run_dir: Path, provenance_text: str, logger) -> str:
    markdown = corruption_markdown(results, provenance_text)
    atomic_write_text(run_dir / "results.md", markdown)
    plot_corruptions(results, run_dir / PLOT)
    summary = results.corruptions
    logger.table("corruptions", ["corruption", "severity", "ACC", "mIoU"],
                 [[name, s, v["acc"], v["miou"]] for name, row in summary["table"].items() for s, v in row.items()])
    logger.summary({f"corruptions/{k}": v for k, v in summary["overall"].items()}
                   | ({f"corruptions/mce_{k}": v for k, v in summary["mce"].items()} if "mce" in summary else {}))
    logger.image("corruptions", run_dir / PLOT)
    return markdown
