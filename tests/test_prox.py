"""Ternary-search prox of lambda ||.||_inf + iota_box (thesis Algorithm 5.1) against independent solutions."""
import pytest
import torch

from robust_seg.attacks.minimal_norm.prox import prox_linf_box, ternary_search_steps


def objective(p, delta, lam, metric):
    """1/2 ||p - delta||_H^2 + lam ||p||_inf per image (eq. 5.11 / 5.16)."""
    weights = torch.ones_like(delta) if metric is None else metric
    return 0.5 * (weights * (p - delta) ** 2).flatten(1).sum(1) + lam * p.flatten(1).abs().amax(1)


def grid_solution(delta, images, lam, metric, points=200_001, upper=1.0):
    """Independent solution of (5.12): exhaustive fine grid over beta in [0, upper], p_beta = clip(box projection)."""
    values = []
    betas = torch.linspace(0, upper, points, dtype=torch.float64)
    for b in range(delta.shape[0]):
        d = delta[b].flatten()
        x = images[b].flatten()
        a = torch.clamp(d, -x, 1 - x)
        h = torch.ones_like(d) if metric is None else metric[b].flatten()
        best = torch.full((), float("inf"), dtype=torch.float64)
        for chunk in betas.split(20_000):
            p = torch.maximum(torch.minimum(a.unsqueeze(0), chunk.unsqueeze(1)), -chunk.unsqueeze(1))
            f = 0.5 * (h * (p - d) ** 2).sum(1) + lam[b] * chunk
            best = torch.minimum(best, f.min())
        values.append(best)
    return torch.stack(values)


def random_problem(seed, sigma, with_metric):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(4, 3, 6, 6, generator=generator, dtype=torch.float64)
    delta = sigma * torch.randn(4, 3, 6, 6, generator=generator, dtype=torch.float64)
    lam = 10 ** (torch.rand(4, generator=generator, dtype=torch.float64) * 4 - 3)
    metric = 10 ** (2 * torch.rand(4, 3, 6, 6, generator=generator, dtype=torch.float64) - 1) if with_metric else None
    return delta, images, lam, metric


def test_step_count_from_precision():
    assert ternary_search_steps(1e-5) == 29  # Sec. 5.4.2.1: 29 iterations at worst
    assert ternary_search_steps(1e-5, upper_bound=1e-5) == 0


@pytest.mark.parametrize("with_metric", [False, True])
@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0])
def test_prox_matches_grid_solution(with_metric, sigma):
    """Objective within 1e-6 of the grid optimum. (5.14) has kinks where beta crosses a box-clipped
    component, so the objective error is linear in the beta error: 1e-6 needs precision 1e-8 for
    sigma = 1; the paper's 1e-5 gives an error below 1e-5 x the largest slope jump (<= 1)."""
    delta, images, lam, metric = random_problem(int(sigma * 100) + with_metric, sigma, with_metric)
    reference = grid_solution(delta, images, lam, metric)
    fine = prox_linf_box(delta, images, lam, metric=metric, precision=1e-8)
    assert torch.allclose(objective(fine, delta, lam, metric), reference, atol=1e-6, rtol=0)
    default = prox_linf_box(delta, images, lam, metric=metric)
    assert (objective(default, delta, lam, metric) - reference).abs().max() < 2e-5


@pytest.mark.parametrize("with_metric", [False, True])
def test_prox_respects_box_and_beats_feasible_points(with_metric):
    delta, images, lam, metric = random_problem(7, 0.5, with_metric)
    p = prox_linf_box(delta, images, lam, metric=metric)
    adv = images + p
    assert adv.min() >= 0 and adv.max() <= 1
    best = objective(p, delta, lam, metric)
    generator = torch.Generator().manual_seed(3)
    for _ in range(50):  # random feasible points near p never do better
        q = p + 0.01 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
        q = torch.clamp(q, -images, 1 - images)
        assert (objective(q, delta, lam, metric) >= best - 1e-9).all()


def test_prox_limits_and_float32():
    delta, images, lam, _ = random_problem(11, 0.3, False)
    zero_weight = prox_linf_box(delta, images, 0.0)
    assert torch.allclose(zero_weight, torch.clamp(delta, -images, 1 - images), atol=1e-5)  # beta = 1 case (5.13)
    assert prox_linf_box(delta, images, 1e6).abs().max() < 1e-5  # huge lambda: p* = 0
    same = prox_linf_box(delta, images, lam, metric=torch.ones_like(delta))
    assert torch.allclose(same, prox_linf_box(delta, images, lam), atol=1e-9)
    single = prox_linf_box(delta.float(), images.float(), lam.float())
    assert single.dtype == torch.float32
    assert (images.float() + single).min() >= 0 and (images.float() + single).max() <= 1
    assert torch.allclose(single.double(), prox_linf_box(delta, images, lam), atol=2e-5)  # float32 keeps the precision


@pytest.mark.parametrize("with_metric", [False, True])
def test_prox_with_a_narrowed_initial_bracket(with_metric):
    """ALMA prox's regime: components near +-beta0 moved by about lambda, so beta* lies within lambda / 4
    or 4 lambda of the largest component (the narrowed brackets of BRACKET_WIDTHS), or far below it
    (large lambda: the search starts from [0, u]). Every case matches the grid optimum."""
    generator = torch.Generator().manual_seed(5)
    images = 0.25 + 0.5 * torch.rand(5, 3, 6, 6, generator=generator, dtype=torch.float64)
    lam = torch.tensor([1e-4, 1e-3, 1e-3, 1e-2, 3.0], dtype=torch.float64)
    sign = torch.randn(5, 3, 6, 6, generator=generator, dtype=torch.float64).sign()
    noise = torch.randn(5, 3, 6, 6, generator=generator, dtype=torch.float64)
    delta = sign * (0.1 + lam.clamp(max=1e-2).view(-1, 1, 1, 1) * noise)
    delta[1] = 0.1 * sign[1] + 1e-3 * noise[1].abs() * (noise[1] > 1.5)  # a few components above the rest
    metric = None
    if with_metric:  # image 3: a tiny metric, so beta* lies far below u - 4 lambda (no narrowed bracket holds)
        metric = 10 ** (2 * torch.rand(5, 3, 6, 6, generator=generator, dtype=torch.float64) - 1)
        metric[3] *= 1e-3
    reference = grid_solution(delta, images, lam, metric)
    fine = prox_linf_box(delta, images, lam, metric=metric, precision=1e-8)
    largest = torch.clamp(delta, -images, 1 - images).flatten(1).abs().amax(1)
    shrink = (largest - fine.flatten(1).abs().amax(1)) / lam  # (u - beta*) / lambda
    assert shrink.min() < 0.25 and ((shrink > 0.25) & (shrink < 4)).any()
    assert not with_metric or shrink[3] > 4
    assert torch.allclose(objective(fine, delta, lam, metric), reference, atol=1e-6, rtol=0)
    default = prox_linf_box(delta, images, lam, metric=metric)
    assert (objective(default, delta, lam, metric) - reference).abs().max() < 2e-5


def test_prox_object_reuses_its_buffers_and_reports_the_norm():
    from robust_seg.attacks.minimal_norm.prox import LinfBoxProx

    delta, images, lam, metric = random_problem(13, 0.3, True)
    prox = LinfBoxProx(images)
    out = torch.empty_like(delta)
    for scale in (1.0, 0.1):  # a second call on the same buffers gives the fresh result
        result = prox(scale * delta, lam, metric=metric, out=out)
        assert result.data_ptr() == out.data_ptr()
        assert torch.equal(result, prox_linf_box(scale * delta, images, lam, metric=metric))
        assert torch.equal(prox.norm, result.flatten(1).abs().amax(1))


def test_prox_of_an_image_does_not_depend_on_the_batch():
    """Each image runs its own step count (line 4 from its bracket), so a batch gives each image's own result."""
    delta, images, lam, metric = random_problem(17, 0.3, True)
    lam[0] = 1e-3  # a narrow bracket next to wide ones
    delta[0] = 0.1 * delta[0].sign() + 1e-3 * delta[0]
    batched = prox_linf_box(delta, images, lam, metric=metric)
    for b in range(delta.shape[0]):
        single = prox_linf_box(delta[b:b + 1], images[b:b + 1], lam[b:b + 1], metric=metric[b:b + 1])
        assert torch.equal(single[0], batched[b])


@pytest.mark.parametrize("block", [1, 64])
def test_prox_on_selected_blocks_matches_grid_solution(monkeypatch, block):
    """The search runs on the blocks of components above the bracket's lower end (64 per block on these
    768-component images, one per block with block = 1); a few components stand above many near the top,
    as in ALMA prox's iteration, so the selection and its narrowing at each step are exercised."""
    from robust_seg.attacks.minimal_norm.prox import LinfBoxProx

    monkeypatch.setattr(LinfBoxProx, "BLOCK", block)
    monkeypatch.setattr(LinfBoxProx, "RESELECT", 2)
    generator = torch.Generator().manual_seed(23)
    images = 0.25 + 0.5 * torch.rand(4, 3, 16, 16, generator=generator, dtype=torch.float64)
    lam = torch.tensor([1e-4, 1e-3, 1e-3, 1e-2], dtype=torch.float64)
    noise = torch.randn(4, 3, 16, 16, generator=generator, dtype=torch.float64)
    delta = noise.sign() * (0.1 + 2 * lam.view(-1, 1, 1, 1) * noise.abs().clamp(max=3) * (noise.abs() > 1.5))
    metric = 10 ** (2 * torch.rand(4, 3, 16, 16, generator=generator, dtype=torch.float64) - 1)
    assert delta.abs().max() < 0.2
    reference = grid_solution(delta, images, lam, metric, points=40_001, upper=0.2)  # the same spacing as on [0, 1]
    fine = prox_linf_box(delta, images, lam, metric=metric, precision=1e-8)
    assert torch.allclose(objective(fine, delta, lam, metric), reference, atol=1e-6, rtol=0)
    assert ((fine.flatten(1).abs() < delta.flatten(1).abs() - 1e-12).sum(1) > 0).all()  # the prox clips each image
    default = prox_linf_box(delta, images, lam, metric=metric)
    assert (objective(default, delta, lam, metric) - reference).abs().max() < 2e-5
