"""CALS multipliers: PHR penalty, update rules (6.12)-(6.15), state, split, all-reduce."""
import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from robust_seg import IGNORE_INDEX
from robust_seg.training.cals import (
    ALMMultipliers,
    HeuristicMultipliers,
    phr_derivative,
    phr_penalty,
)
from robust_seg.data.splits import split_train_validation
from robust_seg.training.losses import build_train_loss


def phr_closed_form(z, rho, lam):
    return lam * z + 0.5 * rho * z * z if lam + rho * z >= 0 else -lam * lam / (2 * rho)


@pytest.mark.parametrize("z, rho, lam", [(1.0, 2.0, 0.5), (-1.0, 2.0, 0.5), (-0.25, 2.0, 0.5), (0.0, 1.0, 1e-6), (-3.0, 0.1, 0.2), (2.0, 0.1, 3.0)])
def test_phr_matches_closed_form(z, rho, lam):
    value = phr_penalty(torch.tensor(z, dtype=torch.float64), torch.tensor(rho, dtype=torch.float64), torch.tensor(lam, dtype=torch.float64))
    assert float(value) == pytest.approx(phr_closed_form(z, rho, lam), rel=1e-12, abs=1e-15)
    derivative = phr_derivative(torch.tensor(z), torch.tensor(rho), torch.tensor(lam))
    assert float(derivative) == pytest.approx(max(0.0, lam + rho * z), rel=1e-6)


def test_phr_derivative_matches_autograd_and_finite_differences():
    torch.manual_seed(0)
    z = (3 * torch.randn(200, dtype=torch.float64)).requires_grad_()
    rho = torch.rand(200, dtype=torch.float64) * 5 + 0.1
    lam = torch.rand(200, dtype=torch.float64) * 2
    (autograd,) = torch.autograd.grad(phr_penalty(z, rho, lam).sum(), z)
    torch.testing.assert_close(autograd, phr_derivative(z.detach(), rho, lam))
    step = 1e-6
    finite = (phr_penalty(z.detach() + step, rho, lam) - phr_penalty(z.detach() - step, rho, lam)) / (2 * step)
    torch.testing.assert_close(finite, phr_derivative(z.detach(), rho, lam), atol=1e-6, rtol=1e-6)
    # Axiom 2 (Appendix V): derivative at z = 0 equals the multiplier.
    torch.testing.assert_close(phr_derivative(torch.zeros(200, dtype=torch.float64), rho, lam), lam)


# Hand-made validation batch: 3 classes, 4 pixels (one unlabelled with extreme logits), margin 10.
VALIDATION_LOGITS = [[25.0, 0.0, 12.0], [0.0, 4.0, -30.0], [1.0, 2.0, 3.0], [500.0, -500.0, 0.0]]
VALIDATION_LABELS = [0, 1, 2, IGNORE_INDEX]


def validation_batch():
    logits = torch.tensor(VALIDATION_LOGITS).T.reshape(1, 3, 2, 2)
    labels = torch.tensor(VALIDATION_LABELS).reshape(1, 2, 2)
    return logits, labels


def labelled_constraints():
    """h_k = d_k / m - 1 of the labelled pixels, as Python lists."""
    return [[(max(z) - v) / 10 - 1 for v in z] for z, y in zip(VALIDATION_LOGITS, VALIDATION_LABELS) if y != IGNORE_INDEX]


def test_alm_multiplier_update_equals_formula_6_12():
    loss = build_train_loss("cals_alm", 3)
    rho = [1.0, 3.0, 0.5]
    lam = [1e-6, 0.2, 2.0]
    state = loss.state_dict()
    state["penalty_parameters"] = torch.tensor(rho, dtype=torch.float64)
    state["multipliers"] = torch.tensor(lam, dtype=torch.float64)
    loss.load_state_dict(state)
    logits, labels = validation_batch()
    loss.accumulate_validation(logits[:, :, :1], labels[:, :1])  # two batches: rows of the image
    loss.accumulate_validation(logits[:, :, 1:], labels[:, 1:])
    loss.update_multipliers(epoch=0)
    constraints = labelled_constraints()
    expected = [
        min(max(sum(min(max(max(0.0, lam[k] + rho[k] * h[k]), 1e-6), 1e6) for h in constraints) / len(constraints), 1e-6), 1e6)
        for k in range(3)
    ]
    torch.testing.assert_close(loss.multipliers.multipliers, torch.tensor(expected, dtype=torch.float64))
    # epoch 0 has no previous epoch (Alg. 6.2's j >= 1): rho unchanged, history has one row
    torch.testing.assert_close(loss.multipliers.penalty_parameters, torch.tensor(rho, dtype=torch.float64))
    assert len(loss.multipliers_history) == 1
    torch.testing.assert_close(loss.multipliers_history[0], torch.tensor(expected, dtype=torch.float64))


def test_alm_initial_multipliers_and_projection():
    multipliers = ALMMultipliers(2, margin=1.0, penalty_update_period=1)
    # all constraints strongly satisfied -> derivatives 0 -> projected to lambda_min
    distances = torch.zeros(1, 2, 1, 1)
    multipliers.accumulate(distances, torch.ones(1, 1, 1, dtype=torch.bool))
    multipliers.update(0)
    torch.testing.assert_close(multipliers.multipliers, torch.full((2,), 1e-6, dtype=torch.float64))
    # huge violation -> projected to lambda_max
    multipliers.accumulate(torch.full((1, 2, 1, 1), 1e8), torch.ones(1, 1, 1, dtype=torch.bool))
    multipliers.update(1)
    torch.testing.assert_close(multipliers.multipliers, torch.full((2,), 1e6, dtype=torch.float64))


def distances_for_mean_constraints(mean_constraints, margin=10.0):
    """One pixel whose normalised constraints h_k = d_k / m - 1 are the given values."""
    return (margin * (torch.tensor(mean_constraints) + 1)).view(1, -1, 1, 1)


def test_alm_thesis_rho_rule_is_algorithm_6_2_every_epoch():
    """Alg. 6.2 l. 10-14, hand-computed over 6 epochs: rho_k <- 1.2 rho_k when dbar_k^(j) > 0.9 max(0, dbar_k^(j-1)),
    for j >= 1, per class, against the previous epoch (constraints that rise, fall, and go negative)."""
    multipliers = ALMMultipliers(4)  # rho_rule="thesis" is the default
    labelled = torch.ones(1, 1, 1, dtype=torch.bool)
    epochs = [
        [0.5, 0.5, -0.5, 0.2],    # j=0: no previous epoch, rho unchanged
        [0.6, 0.44, -0.4, 0.1],   # j=1: rise -> grow; 0.44 < 0.45 -> keep; prev<0 and now<0 -> keep; 0.1 < 0.18 -> keep
        [0.5, 0.43, 0.1, -0.1],   # j=2: 0.5 < 0.54 keep; 0.43 > 0.396 grow; prev<0, 0.1 > 0 grow; -0.1 < 0.09 keep
        [0.3, 0.5, 0.05, 0.0],    # j=3: keep; grow; 0.05 < 0.09 keep; 0 > 0.9*max(0,-0.1)=0? no (not >) keep
        [-0.2, 0.46, 0.2, 0.01],  # j=4: keep; 0.46 > 0.45 grow; 0.2 > 0.045 grow; 0.01 > 0 grow
        [-0.3, 0.1, 0.19, 0.0],   # j=5: -0.3 > 0? no keep; keep; 0.19 > 0.18 grow; 0 > 0.009? no keep
    ]
    expected = [
        [1, 1, 1, 1],
        [1.2, 1, 1, 1],
        [1.2, 1.2, 1.2, 1],
        [1.2, 1.44, 1.2, 1],
        [1.2, 1.728, 1.44, 1.2],
        [1.2, 1.728, 1.728, 1.2],
    ]
    for epoch, (constraints, rho) in enumerate(zip(epochs, expected)):
        multipliers.accumulate(distances_for_mean_constraints(constraints), labelled)
        multipliers.update(epoch)
        torch.testing.assert_close(multipliers.penalty_parameters, torch.tensor(rho, dtype=torch.float64),
                                   msg=f"epoch {epoch}")
    torch.testing.assert_close(multipliers.reference_constraints, torch.tensor(epochs[-1], dtype=torch.float64),
                               rtol=0, atol=1e-6)


def _official_penalty(constraints, rho, multipliers):
    """The public code's validation penalty for one pixel: sum_k PHR(h_k, rho, lambda_k)."""
    total = 0.0
    for h, lam in zip(constraints, multipliers):
        total += (max(0.0, lam + rho * h) ** 2 - lam**2) / (2 * rho)
    return total


def test_alm_official_rho_rule_is_the_public_code():
    """by-liu/CALS update_rho_by_val, hand-computed over 7 epochs with rho_step 2: one scalar rho; at (j+1) % 2 == 0
    it grows by 1.2 (at most 10) when the previous and current validation penalties are both positive and the
    current exceeds 0.9 x previous; the previous penalty is recorded every epoch."""
    multipliers = ALMMultipliers(2, rho_rule="official", penalty_update_period=2, penalty_bounds=(1.0, 1.3))
    labelled = torch.ones(1, 1, 1, dtype=torch.bool)
    epochs = [[0.5, 0.3], [0.6, 0.3], [0.2, 0.1], [0.05, 0.0], [-0.5, -0.5], [-0.4, -0.6], [0.5, 0.5]]
    rho, lam, previous, history = 1.0, [1e-6, 1e-6], None, []
    for epoch, constraints in enumerate(epochs):
        penalty = _official_penalty(constraints, rho, lam)
        lam = [min(max(max(0.0, l + rho * h), 1e-6), 1e6) for l, h in zip(lam, constraints)]
        if (epoch + 1) % 2 == 0 and previous is not None and previous > 0 and penalty > 0 and penalty > 0.9 * previous:
            rho = min(1.3, 1.2 * rho)
        previous = penalty
        history.append(rho)
        multipliers.accumulate(distances_for_mean_constraints(constraints), labelled)
        multipliers.update(epoch)
        torch.testing.assert_close(multipliers.penalty_parameters, torch.full((2,), rho, dtype=torch.float64),
                                   msg=f"epoch {epoch}")
        torch.testing.assert_close(multipliers.multipliers, torch.tensor(lam, dtype=torch.float64), rtol=1e-5,
                                   atol=1e-6)
    # grew at j=1 (penalty rose), not at j=3 (fell below 0.9 x the previous), not at j=5 (penalty <= 0: constraints
    # satisfied); j=6 is not a check epoch
    assert history == [1.0, 1.2, 1.2, 1.2, 1.2, 1.2, 1.2]
    multipliers = ALMMultipliers(1, rho_rule="official", penalty_update_period=1, penalty_bounds=(1.0, 1.3))
    for epoch in range(3):  # rising penalty every epoch: 1 -> 1.2 -> 1.3 (capped)
        multipliers.accumulate(distances_for_mean_constraints([0.5 + epoch]), labelled)
        multipliers.update(epoch)
    torch.testing.assert_close(multipliers.penalty_parameters, torch.tensor([1.3], dtype=torch.float64))


def test_alm_multipliers_use_rho_in_force_during_the_epoch():
    multipliers = ALMMultipliers(1, penalty_update_period=1)
    labelled = torch.ones(1, 1, 1, dtype=torch.bool)
    for epoch in range(2):
        multipliers.accumulate(distances_for_mean_constraints([0.5]), labelled)
        multipliers.update(epoch)
    # epoch 0: lambda = 1e-6 + 1 * 0.5; epoch 1: lambda = lambda_0 + rho * 0.5 with rho = 1 (grows after)
    torch.testing.assert_close(multipliers.multipliers, torch.tensor([0.5 + 1e-6 + 0.5], dtype=torch.float64))
    torch.testing.assert_close(multipliers.penalty_parameters, torch.tensor([1.2], dtype=torch.float64))


def test_heuristic_rule_6_15():
    multipliers = HeuristicMultipliers(4, margin=1.0)
    labelled = torch.ones(1, 1, 1, dtype=torch.bool)
    # penalties P_k = lambda_k * max(0, d_k - 1) with lambda = 0.1: distances give P = 0.1 * excess
    multipliers.accumulate(torch.tensor([2.0, 2.0, 2.0, 2.0]).view(1, 4, 1, 1), labelled)
    multipliers.update(0)  # first epoch: no previous penalty, unchanged
    torch.testing.assert_close(multipliers.multipliers, torch.full((4,), 0.1, dtype=torch.float64))
    # excess: 1 -> 1.2 (P x1.2 > 1.1: up), 1 -> 0.8 (P / 1.25: down), 1 -> 1.05 (within tau: keep), 1 -> 0 (down)
    multipliers.accumulate(torch.tensor([2.2, 1.8, 2.05, 0.5]).view(1, 4, 1, 1), labelled)
    multipliers.update(1)
    expected = torch.tensor([0.11, 0.1 / 1.1, 0.1, 0.1 / 1.1], dtype=torch.float64)
    torch.testing.assert_close(multipliers.multipliers, expected)
    torch.testing.assert_close(multipliers.previous_penalties, torch.tensor([0.12, 0.08, 0.105, 0.0], dtype=torch.float64))


def test_heuristic_multipliers_are_projected():
    multipliers = HeuristicMultipliers(1, margin=1.0, initial_multiplier=1e-6)
    labelled = torch.ones(1, 1, 1, dtype=torch.bool)
    for epoch, distance in enumerate([3.0, 1.5]):
        multipliers.accumulate(torch.tensor([distance]).view(1, 1, 1, 1), labelled)
        multipliers.update(epoch)
    torch.testing.assert_close(multipliers.multipliers, torch.tensor([1e-6], dtype=torch.float64))


def test_update_without_validation_pixels_raises():
    multipliers = ALMMultipliers(3)
    multipliers.accumulate(torch.ones(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.bool))
    with pytest.raises(RuntimeError):
        multipliers.update(0)


@pytest.mark.parametrize("name", ["cals_alm", "cals_hr"])
def test_state_dict_round_trip_and_safe_serialisation(name, tmp_path):
    torch.manual_seed(0)
    loss = build_train_loss(name, 4, penalty_update_period=1) if name == "cals_alm" else build_train_loss(name, 4)
    for epoch in range(3):
        loss.accumulate_validation(15 * torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5)))
        loss.update_multipliers(epoch)
    path = tmp_path / "state.pt"
    torch.save(loss.state_dict(), path)
    state = torch.load(path, weights_only=True)
    restored = build_train_loss(name, 4, penalty_update_period=1) if name == "cals_alm" else build_train_loss(name, 4)
    restored.load_state_dict(state)
    assert len(restored.multipliers_history) == 3
    logits, labels = 15 * torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    torch.testing.assert_close(restored(logits, labels), loss(logits, labels))
    for each in (loss, restored):
        each.accumulate_validation(logits, labels)
        each.update_multipliers(3)
    for key, value in loss.state_dict().items():
        torch.testing.assert_close(restored.state_dict()[key], value)


def test_fresh_alm_state_dict_has_no_reference():
    state = ALMMultipliers(3).state_dict()
    assert state["reference_constraints"] is None and state["multipliers_history"].shape == (0, 3)
    restored = ALMMultipliers(3)
    restored.load_state_dict(state)
    assert restored.reference_constraints is None and restored.multipliers_history == []


def test_split_train_validation():
    train, validation = split_train_validation(1464)
    assert (len(train), len(validation)) == (1171, 293)
    assert sorted(train + validation) == list(range(1464)) and not set(train) & set(validation)
    assert split_train_validation(1464) == (train, validation)
    assert split_train_validation(1464, seed=1)[1] != validation
    assert split_train_validation(10, fraction=0.0) == (list(range(10)), [])


# ---- all-reduce across 2 gloo processes --------------------------------------------------------

NUM_CLASSES = 3
EPOCHS = 3


def distributed_validation_data(epoch):
    """Validation batches of one epoch: 4 images, later split unevenly over ranks (3 + 1).

    Logit distances grow with the epoch, so that both rules change the multipliers.
    """
    generator = torch.Generator().manual_seed(epoch)
    logits = 10 * (epoch + 1) * torch.randn(4, NUM_CLASSES, 4, 4, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (4, 4, 4), generator=generator)
    labels[0, :3] = IGNORE_INDEX
    return logits, labels


def run_validation_epochs(loss, shard):
    for epoch in range(EPOCHS):
        logits, labels = distributed_validation_data(epoch)
        for index in shard:
            loss.accumulate_validation(logits[index : index + 1], labels[index : index + 1])
        loss.update_multipliers(epoch)


def distributed_worker(rank, world_size, init_file, output_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        for name in ("cals_alm", "cals_hr"):
            loss = build_train_loss(name, NUM_CLASSES, penalty_update_period=1) if name == "cals_alm" else build_train_loss(name, NUM_CLASSES)
            run_validation_epochs(loss, [0, 1, 2] if rank == 0 else [3])
            torch.save(loss.state_dict(), os.path.join(output_dir, f"{name}_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_all_reduce_gives_identical_multipliers_equal_to_single_process(tmp_path):
    mp.spawn(distributed_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    initial = {"cals_alm": 1e-6, "cals_hr": 0.1}
    for name in ("cals_alm", "cals_hr"):
        single = build_train_loss(name, NUM_CLASSES, penalty_update_period=1) if name == "cals_alm" else build_train_loss(name, NUM_CLASSES)
        run_validation_epochs(single, [0, 1, 2, 3])
        expected = single.state_dict()
        ranks = [torch.load(tmp_path / f"{name}_rank{rank}.pt", weights_only=True) for rank in range(2)]
        for key, value in expected.items():
            if value is None:
                assert all(state[key] is None for state in ranks)
                continue
            assert torch.equal(ranks[0][key], ranks[1][key]), key
            torch.testing.assert_close(ranks[0][key], value)
        # the rule did act: every multiplier moved away from its initial value
        assert not any(math.isclose(float(value), initial[name]) for value in expected["multipliers"])
