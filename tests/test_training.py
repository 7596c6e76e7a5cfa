"""AT / PIR-AT training: PGD examples in closed form on a toy model, AT trains on points of the eps ball,
a NaN loss stops the run and keeps the last good checkpoint, classifier pre-training pieces."""
import itertools

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from robust_seg.training.adversary import adversarial_examples
from tests.conftest import TINY, compose_config

EPS = 4 / 255
AT = [*TINY, "scheme=at", "scheme.adversarial.steps=2", "batch_size=8", "max_steps_per_epoch=2",
      "robust_eval.iterations=0", "runtime.threads=1"]


class PixelLinear(nn.Module):
    """Per-pixel linear segmentation model: logits = W x + b at every pixel."""

    def __init__(self, classes: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, images):
        return self.conv(images)


def _at_config(steps: int):
    return OmegaConf.create({"eps": "4/255", "step_size": 0.01, "steps": steps, "loss": "ce", "random_start": False})


@pytest.mark.parametrize("steps, moved", [(1, 0.01), (2, EPS), (5, EPS)])
def test_pgd_examples_of_a_two_class_linear_model_in_closed_form(steps, moved):
    """Two classes: d CE / dx = p_other (w_other - w_label) has a constant sign, so k steps of 0.01 move
    every coordinate by min(0.01 k, eps) in the direction sign(w_other - w_label)."""
    torch.manual_seed(0)
    model = PixelLinear().train()
    images = 0.1 + 0.8 * torch.rand(3, 3, 8, 8)
    labels = torch.randint(0, 2, (3, 8, 8))
    adv = adversarial_examples(model, images, labels, _at_config(steps))
    weight = model.conv.weight[:, :, 0, 0]  # (2, 3)
    direction = (weight[1] - weight[0]).sign()[None, :, None, None] * (1 - 2 * labels[:, None].float())
    torch.testing.assert_close(adv, images + moved * direction, atol=1e-6, rtol=0)
    assert model.training, "the model's mode is restored"
    assert all(p.grad is None for p in model.parameters()), "no parameter gradients"


def test_pgd_examples_stay_in_the_image_box():
    torch.manual_seed(0)
    model = PixelLinear(4)
    images = torch.rand(2, 3, 8, 8).round()  # pixels at 0 and 1: the box clips the step
    labels = torch.randint(0, 4, (2, 8, 8))
    adv = adversarial_examples(model, images, labels, _at_config(3))
    assert adv.min() >= 0 and adv.max() <= 1
    assert (adv - images).abs().max() <= EPS + 1e-7


def test_at_trains_on_pgd_points_inside_the_eps_ball(tmp_path, monkeypatch):
    """scheme=at: every training forward sees exactly the PGD output, which lies in the eps ball of its
    clean batch, differs from it (and reaches the radius), and the run's loss is the loss on those points."""
    import robust_seg.training.loop as loop

    made, trained = [], []

    def recording_adversary(model, images, labels, cfg):
        adv = adversarial_examples(model, images, labels, cfg)
        made.append((images.clone(), adv))
        return adv

    def recording_build(cfg, num_classes):
        model = original_build(cfg, num_classes)
        forward = model.forward

        def recorded(images, auxiliary=False):
            if auxiliary:
                trained.append(images.detach().clone())
            return forward(images, auxiliary)

        model.forward = recorded
        return model

    original_build = loop.build_model
    monkeypatch.setattr(loop, "adversarial_examples", recording_adversary)
    monkeypatch.setattr(loop, "build_model", recording_build)
    cfg = compose_config("train", [*AT, "schedule.epochs=1", "schedule.warmup_epochs=0"])
    results = loop.train(cfg, tmp_path)

    assert len(made) == len(trained) == 2
    for (clean, adv), seen in zip(made, trained):
        assert torch.equal(seen, adv)
        distance = (adv - clean).abs().flatten(1).amax(1)
        assert (distance <= EPS + 1e-6).all() and (distance >= EPS - 1e-6).all()
        assert adv.min() >= 0 and adv.max() <= 1
    assert torch.isfinite(torch.tensor(results["final"]["train_loss"]))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import robust_seg.training.loop as loop

    original = loop.build_train_loss

    def diverging_at_fifth_call(name, num_classes, **options):
        loss = original(name, num_classes, **options)
        calls = itertools.count(1)

        class Diverging(type(loss)):
            def __call__(self, logits, labels):
                value = super().__call__(logits, labels)
                return value * float("nan") if next(calls) == 5 else value

        loss.__class__ = Diverging
        return loss

    monkeypatch.setattr(loop, "build_train_loss", diverging_at_fifth_call)
    cfg = compose_config("train", [*TINY, "batch_size=8", "max_steps_per_epoch=2", "schedule.epochs=3",
                                   "schedule.warmup_epochs=0", "robust_eval.iterations=0", "eval_every=9"])
    with pytest.raises(loop.TrainingDiverged, match=r"loss is nan at epoch 3, step 1.*last good checkpoint"):
        loop.train(cfg, tmp_path)
    state = torch.load(tmp_path / loop.CHECKPOINT, weights_only=True)
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [1, 2]
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "train_results.json").exists()


def test_dominant_class_ignores_background_and_unlabelled_pixels():
    from robust_seg import IGNORE_INDEX
    from robust_seg.training.pretraining import dominant_class_labels

    labels = torch.zeros(4, 4, 4, dtype=torch.long)
    labels[0, :2] = 3          # 8 pixels of class 3, 8 of background
    labels[0, 2, :3] = 1       # 3 of class 1
    labels[1] = IGNORE_INDEX   # nothing labelled
    labels[2, 0, 0] = 5        # a single object pixel beats a background majority
    labels[3, :2] = 2
    labels[3, 2:] = IGNORE_INDEX
    labels[3, 0, :2] = 4       # tie 2 vs ... : 6 pixels of 2, 2 of 4
    assert dominant_class_labels(labels, 6).tolist() == [3, 0, 5, 2]


def test_pretrained_backbone_loads_as_the_segmentation_backbone(tmp_path):
    """The saved classifier backbone initialises model.backbone_init=robust (mmseg format) exactly."""
    from robust_seg.models import build_model
    from robust_seg.training.pretraining import build_classifier

    cfg = compose_config("train", ["model=small_upernet_convnext"])
    torch.manual_seed(1)
    classifier = build_classifier(cfg, 6)
    assert classifier(torch.rand(2, 3, 32, 32)).shape == (2, 6, 1, 1)
    path = tmp_path / "backbone.pt"
    torch.save(classifier.backbone.state_dict(), path)
    model_cfg = compose_config("train", ["model=small_upernet_convnext", "model.backbone_init=robust",
                                         f"+model.backbone_checkpoints.robust={path}"]).model
    model = build_model(model_cfg, 6)
    for key, value in classifier.backbone.state_dict().items():
        assert torch.equal(model.backbone().state_dict()[key], value), key


def test_pretrain_config_is_validated_by_its_schema():
    """configs/pretrain.yaml composes against robust_seg.training.config.PretrainConfig: the robust preset resolves to
    the AT settings, and a wrong type or an unknown key fails at composition."""
    from hydra.errors import ConfigCompositionException
    from omegaconf.errors import OmegaConfBaseException

    cfg = compose_config("pretrain", ["adversarial=${robust_preset}", "run_name=demo"])
    assert cfg.adversarial.steps == 2 and cfg.adversarial.step_size == 0.01 and cfg.run_name == "demo"
    assert compose_config("pretrain").adversarial is None
    for bad, named in ((["epochs=many"], "epochs"), (["epoch=3"], "epoch"), (["robust_preset.stepz=3"], "stepz"),
                       (["robust_eval.max_images=lots"], "max_images")):
        with pytest.raises((ConfigCompositionException, OmegaConfBaseException)) as error:
            compose_config("pretrain", bad)
        assert named in str(error.value)
