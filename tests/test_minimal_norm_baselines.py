"""DAG, FMN, PDPGD and the binary-search baselines against ALMA prox on a small nonlinear model; APSR metrics."""
import pytest
import torch
from torch import nn

from robust_seg.attacks.minimal_norm import (alma_prox, dag, fmn_linf, ifgsm_binary_search, mifgsm_binary_search,
                                             pdpgd_linf, pgd_binary_search)
from robust_seg.metrics import apsr as metrics

torch.set_num_threads(1)


class SmallConvModel(nn.Module):
    """Two 3x3 convolutions with a tanh, inputs centred and amplified (minimal norms of a few /255)."""

    def __init__(self, classes=4):
        super().__init__()
        self.first = nn.Conv2d(3, 16, 3, padding=1)
        self.second = nn.Conv2d(16, classes, 3, padding=1)

    def forward(self, x):
        return self.second(torch.tanh(self.first((x - 0.5) * 20)))


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = SmallConvModel().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    images = (0.5 + 0.02 * torch.randn(4, 3, 16, 16)).clamp(0, 1)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:, 0, :4] = 255
    return model, images, labels


def median_norm(result):
    return metrics.norm_summary(result.extras["norm"], result.extras["success"])["median_x255"]


def test_alma_prox_beats_dag_and_binary_search_baselines(problem):
    model, images, labels = problem
    alma = alma_prox(model, images, labels)
    baselines = {
        "DAG 0.003": dag(model, images, labels, step_size=0.003),
        "DAG 0.001": dag(model, images, labels, step_size=0.001),
        "I-FGSM 13x20": ifgsm_binary_search(model, images, labels),
        "MI-FGSM 13x20": mifgsm_binary_search(model, images, labels),
        "PGD CE 13x40": pgd_binary_search(model, images, labels),
        "PGD CE 13x4x10": pgd_binary_search(model, images, labels, iterations=10, restarts=4),
        "PGD DLR 13x40": pgd_binary_search(model, images, labels, loss="dlr"),
        "PGD DLR 13x4x10": pgd_binary_search(model, images, labels, loss="dlr", iterations=10, restarts=4),
    }
    assert alma.extras["success"].all()
    for name, result in {"ALMA prox": alma, **baselines}.items():
        assert result.adv_images.min() >= 0 and result.adv_images.max() <= 1, name
        assert torch.equal(result.predictions, model(result.adv_images).argmax(1)), name
        assert torch.allclose(result.extras["apsr"], metrics.apsr(result.predictions, labels)), name
    for name, result in baselines.items():
        assert median_norm(alma) <= median_norm(result), (name, median_norm(alma), median_norm(result))
    assert (baselines["I-FGSM 13x20"].extras["forwards"] == 260).all()
    assert (baselines["PGD DLR 13x4x10"].extras["backwards"] == 520).all()


def test_dag_stops_at_nu_and_counts_propagations(problem):
    model, images, labels = problem
    result = dag(model, images, labels, step_size=0.003)
    extras = result.extras
    assert extras["success"].all()
    assert (extras["forwards"] < 500).all()
    assert torch.equal(extras["backwards"], extras["forwards"] - 1)  # the last evaluated iterate takes no step


def test_fmn_and_pdpgd_return_valid_results(problem):
    model, images, labels = problem
    for attack in (fmn_linf, pdpgd_linf):
        result = attack(model, images, labels, iterations=100)
        extras = result.extras
        assert (extras["forwards"] == 100).all() and (extras["backwards"] == 100).all()
        assert result.adv_images.min() >= 0 and result.adv_images.max() <= 1
        assert torch.allclose(extras["norm"], (result.adv_images - images).flatten(1).abs().amax(1).double())
        assert (extras["success"] == (extras["apsr"] >= 0.99)).all()


def test_targeted_baselines_reach_the_target(problem):
    model, images, labels = problem
    target = torch.full_like(labels, 1)
    result = pgd_binary_search(model, images, labels, targeted=True, target_labels=target, steps=6, iterations=10)
    hits = metrics.pixel_success(result.predictions, labels, target)
    assert torch.allclose(result.extras["apsr"], hits.flatten(1).sum(1).double() / (labels != 255).flatten(1).sum(1))


def test_apsr_metrics_closed_form(tmp_path):
    labels = torch.tensor([[[0, 1], [2, 255]]])
    predictions = torch.tensor([[[1, 1], [0, 0]]])
    assert torch.allclose(metrics.apsr(predictions, labels), torch.tensor([2 / 3], dtype=torch.float64))
    target = torch.tensor([[[1, 1], [255, 0]]])
    assert torch.allclose(metrics.apsr(predictions, labels, target), torch.tensor([1.0], dtype=torch.float64))

    norms = torch.tensor([0.5, 1.0, 2.0, 0.1], dtype=torch.float64) / 255
    success = torch.tensor([True, True, True, False])
    summary = metrics.norm_summary(norms, success)
    assert summary["median_x255"] == pytest.approx(1.5) and summary["mean_x255"] == pytest.approx((3.5 + 255) / 4)
    assert summary["success_rate"] == 0.75
    curve = metrics.not_fooled_curve(norms, success, [0.0, 0.5 / 255, 1.0 / 255, 1.0])
    assert curve["percentage"] == pytest.approx([100.0, 75.0, 50.0, 25.0])
    assert metrics.not_fooled_percentage(torch.tensor([0.995, 0.5])) == 50.0
    assert metrics.not_fooled_percentage([0.1, 0.2, 0.99]) == pytest.approx(200 / 3)
    cost = metrics.complexity_summary(torch.tensor([500, 300]), torch.tensor([500, 299]), seconds=10.0)
    assert cost == {"forwards": 400.0, "backwards": 399.5, "seconds_per_image": 5.0, "images": 2}
    grid = metrics.default_eps_grid(20)
    assert grid[0] == 0 and grid[-1] == pytest.approx(1.0) and grid == sorted(grid)
    path = tmp_path / "curve.png"
    metrics.save_failure_curves_png({"toy": metrics.not_fooled_curve(norms, success, grid)}, str(path), title="toy")
    assert path.stat().st_size > 1000
