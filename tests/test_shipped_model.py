"""Acceptance checks of the attacks on the shipped small model (SEA paper Sec. 2; thesis Table 5.1 layout).

The numbers each test measures are printed (pytest -s) so they can be reported. The papers' comparisons at their
budgets (APGD vs PGD, red-eps vs const-eps, ALMA prox vs DAG and the binary searches, ALMA prox's success rate) are
measurements of the attacks' strength on this model, a minute or more each: they are in the slow set
(``pytest -m slow``). The default suite checks the same rules on toy models with known optima
(tests/test_apgd_pgd.py: APGD beats PGD, both schedules; tests/test_alma_prox.py: ALMA prox's known minimal norm;
tests/test_minimal_norm_baselines.py: ALMA prox against DAG and the binary searches on a small problem).
"""
import pytest
import torch
from omegaconf import OmegaConf

from robust_seg.attacks import apgd, check_linf_box, paper_step_size, pgd, sea
from robust_seg.data import build_dataset
from robust_seg.models.embedded import load_embedded_model
from robust_seg.names import ROOT


@pytest.fixture(scope="module")
def model():
    return load_embedded_model()


@pytest.fixture(scope="module")
def clean_model():
    return load_embedded_model("clean")


@pytest.fixture(scope="module")
def batch():
    cfg = OmegaConf.load(ROOT / "configs" / "dataset" / "synthetic.yaml")
    dataset = build_dataset(cfg, split="val", train=False)
    items = [dataset[i] for i in range(8)]
    return torch.stack([i["image"] for i in items]), torch.stack([i["label"] for i in items])


def test_sea_accuracy_decreases_with_radius_and_is_the_worst_case(model, batch):
    """4 images, 10 iterations: measured 85.7, 73.0, 55.9 at 4, 8, 12/255 (20 iterations on 8 images: about the
    same, at four times the cost)."""
    images, labels = batch[0][:4], batch[1][:4]
    accuracies = []
    for eps in (0.0, 4 / 255, 8 / 255, 12 / 255):
        if eps == 0:
            accuracies.append(100 * float((model(images).argmax(1) == labels)[labels != 255].float().mean()))
            continue
        result = sea(model, images, labels, eps=eps, iterations=10, generator=torch.Generator().manual_seed(0))
        check_linf_box(result.adv_images, images, eps)
        for name, component in result.components.items():
            assert torch.all(result.accuracy <= component.accuracy + 1e-12), name
        accuracies.append(float(result.accuracy.mean()))
    print("SEA ACC at 0, 4, 8, 12 /255:", [round(a, 1) for a in accuracies])
    assert all(a > b for a, b in zip(accuracies, accuracies[1:]))


@pytest.mark.slow  # a measurement of the attacks' strength at the paper's budget (module docstring)
def test_apgd_beats_pgd_at_equal_iterations(model, batch):
    """SEA paper Table 7: SegPGD's loss (Bal-CE) optimised by APGD vs by PGD with the paper's step size."""
    images, labels = batch
    eps, iterations = 12 / 255, 100
    strong = apgd(model, images, labels, eps=eps, loss="bal_ce", iterations=iterations, schedule="const",
                  generator=torch.Generator().manual_seed(0))
    weak = pgd(model, images, labels, eps=eps, loss="bal_ce", iterations=iterations,
               step_size=paper_step_size(eps, iterations))
    print(f"ACC at 12/255, Bal-CE, {iterations} iterations: APGD {strong.accuracy.mean():.1f}, "
          f"PGD {weak.accuracy.mean():.1f}")
    assert strong.accuracy.mean() < weak.accuracy.mean()


@pytest.mark.slow  # a measurement of the attacks' strength at the paper's budget (module docstring)
def test_red_eps_matches_const_eps_on_average(model, batch):
    """Figure 2's comparison at an equal budget. On this small synthetic model red-eps does NOT beat
    const-eps as in the paper: it is 0.4-2 points weaker (300 iterations, 256 images, README "Radius
    schedules": Mask-CE 8/255 73.9 vs 72.9, 12/255 56.8 vs 55.2; JS 72.0 vs 71.6, 54.4 vs 54.3).
    This guards the schedule (stage hand-over, final-radius selection) against regressions that would
    open a larger gap; it does not claim the paper's finding for this model."""
    images, labels = batch
    gaps = []
    for loss in ("mask_ce", "js"):
        for eps in (8 / 255, 12 / 255):
            runs = {schedule: apgd(model, images, labels, eps=eps, loss=loss, iterations=60, schedule=schedule,
                                   generator=torch.Generator().manual_seed(1)).accuracy.mean().item()
                    for schedule in ("red", "const")}
            print(f"{loss} eps {eps * 255:.0f}/255: red {runs['red']:.1f} const {runs['const']:.1f}")
            gaps.append(runs["const"] - runs["red"])
    assert sum(gaps) / len(gaps) >= -2  # percentage points


@pytest.mark.slow  # a measurement of the attacks' strength at the paper's budget (module docstring)
def test_alma_prox_finds_smaller_norms_than_dag_and_the_binary_search_baselines(clean_model, batch):
    """Thesis Table 5.1 on the shipped clean model: median ||delta||_inf x 255 (failures count as 255).

    The clean twin, as in Table 5.1: on the adversarially trained default ALMA prox's default budget
    does not reach APSR >= 99% (the SEA paper's App. C.4 observes the same on robust models).
    Minimal norms on the synthetic task are ~30/255 instead of ~1/255 on natural images, so ALMA prox's
    step size (Sec. 5.5.5.3: 1e-3 -> 1e-4, set for the latter) is scaled x3 to fit 500 iterations;
    the other attacks keep their defaults (DAG, binary searches are scale-free or search the radius).
    """
    model = clean_model
    from robust_seg.attacks.minimal_norm import (alma_prox, dag, ifgsm_binary_search, mifgsm_binary_search,
                                                 pgd_binary_search)
    from robust_seg.metrics.apsr import norm_summary

    images, labels = batch[0][:4], batch[1][:4]
    attacks = {
        "ALMA prox": lambda: alma_prox(model, images, labels, step_size_init=3e-3, step_size_final=3e-4),
        "DAG": lambda: dag(model, images, labels),
        "I-FGSM 13x20": lambda: ifgsm_binary_search(model, images, labels),
        "MI-FGSM 13x20": lambda: mifgsm_binary_search(model, images, labels),
        "PGD-CE 13x40": lambda: pgd_binary_search(model, images, labels, loss="ce", iterations=40),
        "PGD-DLR 13x4x10": lambda: pgd_binary_search(model, images, labels, loss="dlr", iterations=10, restarts=4),
    }
    medians = {}
    for name, attack in attacks.items():
        result = attack()
        assert float(result.adv_images.min()) >= 0 and float(result.adv_images.max()) <= 1
        check_linf_box(result.adv_images, images, result.extras["norm"])
        summary = norm_summary(result.extras["norm"], result.extras["success"])
        medians[name] = summary["median_x255"]
        print(f"{name:16s} median {summary['median_x255']:7.2f}  mean {summary['mean_x255']:7.2f}  "
              f"success {summary['success_rate']:.2f}")
    for name, median in medians.items():
        assert medians["ALMA prox"] <= median + 1e-9, (name, medians)


@pytest.mark.slow  # a measurement of the attacks' strength at the paper's budget (module docstring)
def test_alma_prox_succeeds_on_15_of_16_images_of_the_clean_twin(clean_model):
    """Thesis Table 5.1 setting on the shipped clean twin: the first 16 synthetic validation images, 500 iterations,
    success = APSR >= 99%. With the multiplier bounds [1e-12, 1] (the default) 16/16 were measured; the
    classification bounds [1e-6, 1e12] of Sec. 4.4 reach 11/16 (docs/agreement.md)."""
    from robust_seg.attacks.minimal_norm import alma_prox

    cfg = OmegaConf.load(ROOT / "configs" / "dataset" / "synthetic.yaml")
    dataset = build_dataset(cfg, split="val", train=False)
    items = [dataset[i] for i in range(16)]
    images, labels = torch.stack([i["image"] for i in items]), torch.stack([i["label"] for i in items])
    result = alma_prox(clean_model, images, labels, iterations=500)
    check_linf_box(result.adv_images, images, result.extras["norm"])
    successes = int(result.extras["success"].sum())
    print(f"ALMA prox: {successes}/16 successes, median norm x255 {255 * result.extras['norm'].median():.2f}")
    assert successes >= 15
