"""Figures of training runs."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def plot_multipliers(history: list[torch.Tensor], class_names: list[str], path: Path) -> None:
    """Per-class CALS multipliers over epochs (thesis Figure V-1 style, log scale)."""
    values = torch.stack([h.detach().double().cpu() for h in history])
    figure, axis = plt.subplots(figsize=(6, 3.5))
    for k, name in enumerate(class_names):
        axis.plot(range(1, values.shape[0] + 1), values[:, k].numpy(), label=name)
    axis.set_yscale("log")
    axis.set_xlabel("epoch")
    axis.set_ylabel("multiplier $\\lambda_k$")
    axis.legend(fontsize=6, ncol=2)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
