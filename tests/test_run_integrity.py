"""Trustworthy runs: bad input is one line and changes nothing; resume refuses other settings; provenance recorded.

The entry points run in-process here (``tests.conftest.call``: ``main()`` with a patched ``sys.argv``), the same code
path as the console scripts without paying the interpreter start for each of the many inputs.
``test_cli_errors`` runs one of them as a real subprocess.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, call, killed_at_batch

ASSET = ROOT / "robust_seg" / "assets" / "small_upernet_convnext_synthetic.pt"
CLEAN_ASSET = ROOT / "robust_seg" / "assets" / "small_upernet_convnext_synthetic_clean.pt"
EVAL = ["logger=none", "dataset.synthetic.num_val=4", "max_images=4", "batch_size=2", "attack=apgd",
        "attack.eps=[8/255]", "attack.options.iterations=2", "attack.options.schedule=const"]
TRAIN = ["logger=none", "dataset.synthetic.num_train=16", "dataset.synthetic.num_val=4", "batch_size=8",
         "schedule.epochs=1", "schedule.warmup_epochs=0", "robust_eval.max_images=2", "robust_eval.iterations=1"]


def snapshot(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A directory holding one finished evaluation run (``existing``) and one finished training run, plus
    broken checkpoints and a VOC tree with a corrupt image."""
    from tests.test_data import write_voc

    root = tmp_path_factory.mktemp("integrity")
    with contextlib.chdir(root):
        code, _, err = call("evaluate", *EVAL, "run_name=existing")
        assert code == 0, err
        code, _, err = call("train", *TRAIN, "run_name=existing")
        assert code == 0, err
    state = torch.load(ASSET, weights_only=True)
    broken = {k: (v * float("nan") if v.is_floating_point() else v) for k, v in state.items()}
    torch.save(broken, root / "nan.pt")
    torch.save({"segmentor.backbone.weight": torch.zeros(1)}, root / "other.pt")
    voc = root / "VOC2012"
    write_voc(voc, ["a", "b"], ["c", "d"])
    (voc / "JPEGImages" / "d.jpg").write_bytes(b"not a jpeg")
    return root


WRONG_SHA = "0" * 64
BAD_EVALUATE = [
    # (overrides, a fragment the one line must contain)
    (["attack.options.iterations=0"], "attack.options.iterations=0"),
    (["attack.options.iterations=-1"], "attack.options.iterations=-1"),
    (["attack.options.iterations=abc"], "attack.options.iterations"),
    (["attack.options.iterations=2.5"], "attack.options.iterations"),
    (["batch_size=0"], "batch_size=0"),
    (["batch_size=-2"], "batch_size=-2"),
    (["batch_size=many"], "batch_size"),
    (["max_images=0"], "max_images=0"),
    (["attack.eps=inf"], "not finite"),
    (["attack.eps=8"], "8 looks like 8/255"),
    (["attack.eps=[4,8]"], "looks like 4/255"),
    (["attack.eps=abc"], "cannot read 'abc' as a radius"),
    (["attack.eps=-1/255"], "cannot read '-1/255'"),
    (["attack.eps=1/0"], "divides by zero"),
    (["attack.eps=[8/255"], "attack.eps=[8/255"),
    (["attack.options.loss=foo"], "attack.options.loss='foo'"),
    (["+attack.options.iters=3"], "attack.options.iters: not an option of apgd"),
    (["attack=sea", "attack.options.losses=[foo]"], "attack.options.losses='foo'"),
    (["attack=nonexistent"], "Could not find 'attack/nonexistent'"),
    (["model=nonexistent"], "Could not find 'model/nonexistent'"),
    (["+foo=1"], "unknown config key foo"),
    (["runtime.device=tpu"], "runtime.device"),
    (["runtime.threads=0"], "runtime.threads=0"),
    (["logger.mode=sometimes"], "logger.mode='sometimes'"),
    (["calibration=true", "calibration_temperature=-1"], "calibration_temperature"),
    (["model=small_segmenter_vit"], "has no trained weights"),
    (["model.checkpoint=/nonexistent/model.pt"], "checkpoint not found: /nonexistent/model.pt"),
    (["model.checkpoint={root}/nan.pt"], "NaN or infinite values"),
    (["model.checkpoint={root}/other.pt"], "does not match the model"),
    (["model.checkpoint_sha256=" + WRONG_SHA], "sha256"),
    (["model.checkpoint_sha256=xyz"], "64 hexadecimal digits"),
    (["dataset=pascal_voc", "dataset.root=/nonexistent/VOC2012", "model.random_weights=true"],
     "/nonexistent/VOC2012"),
    (["dataset=ade20k"], "does not fit the composed config"),  # EVAL's dataset.synthetic.* below a null section
    (["attack=none"], "attack.options.iterations: not an option of none (it takes no options)"),
    ([], "already holds an evaluation: pass resume=true"),
    (["resume=true", "seed=1"], "seed: 0 -> 1"),
    (["resume=true", "attack.seed=3"], "attack.seed: 0 -> 3"),
    (["resume=true", f"model.checkpoint={CLEAN_ASSET}"], "model.checkpoint"),
    (["resume=true", "dataset.root=/elsewhere"], "dataset.root: None -> '/elsewhere'"),
    (["resume=true", "attack.options.iterations=3"], "attack.options.iterations: 2 -> 3"),
]
BAD_TRAIN = [
    (["optimizer.lr=nan"], "optimizer.lr=nan"),
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["schedule.epochs=0"], "schedule.epochs=0"),
    (["schedule.epochs=-3"], "schedule.epochs=-3"),
    (["scheme=at", "scheme.adversarial.steps=0"], "scheme.adversarial.steps=0"),
    (["scheme=at", "scheme.adversarial.eps=8"], "8 looks like 8/255"),
    (["scheme=at", "scheme.adversarial.eps=0"], "radius > 0"),
    (["scheme.loss.name=foo"], "unknown training loss 'foo'"),
    (["micro_batch_size=0"], "micro_batch_size=0"),
    (["optimizer.name=adam"], "optimizer.name='adam'"),
    ([], "already holds a training run: pass resume=true"),
    (["resume=true", "optimizer.lr=0.5"], "optimizer.lr: 0.001 -> 0.5"),
    (["resume=true", "scheme=at"], "scheme.name: 'clean' -> 'at'"),
    (["resume=true", "schedule.epochs=2"], "schedule.epochs: 1 -> 2"),
    (["resume=true", "model=small_pspnet_resnet"], "model.name: 'small_upernet_convnext' -> 'small_pspnet_resnet'"),
]


def _check_refused(workspace: Path, module: str, base: list[str], overrides: list[str], fragment: str) -> None:
    existing = workspace / "outputs" / module / "existing"
    before = snapshot(existing)
    entries_before = sorted(p.name for p in (workspace / "outputs" / module).iterdir())
    overrides = [o.replace("{root}", str(workspace)) for o in overrides]
    if "dataset=pascal_voc" in overrides:
        base = [o for o in base if not o.startswith("dataset.synthetic.")]
    with contextlib.chdir(workspace):
        code, out, err = call(module, *base, *overrides, "run_name=existing")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, (overrides, out[-2000:], err[-2000:])
    assert "Traceback" not in err + out, (overrides, err[-3000:])
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], (overrides, lines[-1:])
    assert snapshot(existing) == before, f"{overrides} changed the existing run directory"
    assert sorted(p.name for p in (workspace / "outputs" / module).iterdir()) == entries_before


@pytest.mark.parametrize("overrides, fragment", BAD_EVALUATE, ids=[" ".join(o) or "rerun" for o, _ in BAD_EVALUATE])
def test_bad_evaluation_input_is_one_line_and_changes_nothing(workspace, overrides, fragment):
    _check_refused(workspace, "evaluate", EVAL, overrides, fragment)


@pytest.mark.parametrize("overrides, fragment", BAD_TRAIN, ids=[" ".join(o) or "rerun" for o, _ in BAD_TRAIN])
def test_bad_training_input_is_one_line_and_changes_nothing(workspace, overrides, fragment):
    _check_refused(workspace, "train", TRAIN, overrides, fragment)


def test_corrupt_image_names_the_file_and_leaves_no_directory(workspace):
    with contextlib.chdir(workspace):
        code, _, err = call("evaluate", "logger=none", "dataset=pascal_voc", f"dataset.root={workspace}/VOC2012",
                            "model=small_upernet_convnext", "model.random_weights=true", "dataset.eval_size=64",
                            "run_name=corrupt")
    assert code == 2 and "Traceback" not in err
    assert "cannot read image" in err.strip().splitlines()[-1] and "d.jpg" in err.strip().splitlines()[-1]
    assert not (workspace / "outputs" / "evaluate" / "corrupt").exists()


def test_refused_new_run_leaves_no_directory(tmp_path):
    with contextlib.chdir(tmp_path):
        code, _, err = call("evaluate", *EVAL, "batch_size=0")
    assert code == 2 and "batch_size=0" in err
    assert not (tmp_path / "outputs" / "evaluate").exists() or not any((tmp_path / "outputs" / "evaluate").iterdir())


def test_harmless_keys_may_differ_on_resume(workspace):
    """A finished run resumed with another logger / thread count / device spelling continues (nothing to do)."""
    with contextlib.chdir(workspace):
        code, out, err = call("evaluate", *EVAL, "run_name=existing", "resume=true", "runtime.threads=1",
                              "runtime.device=cpu", "logger=wandb", "logger.mode=disabled", "figure_images=1")
    assert code == 0, err
    assert "run directory:" in out


def test_results_record_provenance_and_sha256_of_the_weights(workspace):
    results = json.loads((workspace / "outputs" / "evaluate" / "existing" / "results.json").read_text())
    record = results["provenance"]
    assert record["model"]["source"] == "embedded"
    assert record["model"]["sha256"] == hashlib.sha256(ASSET.read_bytes()).hexdigest()
    assert record["model"]["checkpoint"] == str(ASSET)
    assert record["dataset"] == {"name": "synthetic", "root": None, "split": "val", "images": 4, "num_classes": 6,
                                 "protocol": {"name": "pad", "outlines": "ignore",
                                              "description": "pad: images as stored; label 255 ignored"}}
    assert record["attack"]["config"]["options"]["iterations"] == 2 and record["radii"] == ["8/255"]
    assert record["seeds"] == {"seed": 0, "attack": 0, "dataset": 0} and record["batch_size"] == 2
    assert "attack.options.iterations=2" in record["overrides"]
    assert record["software"]["torch"] == torch.__version__ and record["software"]["mmseg"]
    assert results["random_weights"] is False
    assert "embedded small_upernet_convnext_synthetic.pt" in (workspace / "outputs" / "evaluate" / "existing"
                                                               / "results.md").read_text()
    log = (workspace / "outputs" / "evaluate" / "existing" / "evaluate.log").read_text()
    assert "batch 2/2 done" in log and "| attack |" in log


def test_the_main_job_records_the_shipped_weights_sha256(tmp_path):
    """The main job (scripts/main.sh: experiment=embedded_default), at 2 images and 2 iterations."""
    with contextlib.chdir(tmp_path):
        code, out, err = call("evaluate", "experiment=embedded_default", "logger=none", "max_images=2",
                              "attack.options.iterations=2", "run_name=main")
    assert code == 0, err[-2000:]
    record = json.loads((tmp_path / "outputs" / "evaluate" / "main" / "results.json").read_text())["provenance"]
    assert record["model"]["sha256"] == hashlib.sha256(ASSET.read_bytes()).hexdigest()
    assert record["model"]["source"] == "embedded" and record["overrides"][0] == "experiment=embedded_default"
    assert record["attack"]["config"]["note"].startswith("embedded default")
    assert "Diagnostics: " in out  # the main job's output shows the diagnostics line


def test_random_weights_only_on_request_and_said_everywhere(tmp_path):
    with contextlib.chdir(tmp_path):
        code, out, err = call("evaluate", *EVAL, "model=small_upernet_convnext", "model.random_weights=true",
                              "run_name=random")
    assert code == 0, err
    run = tmp_path / "outputs" / "evaluate" / "random"
    results = json.loads((run / "results.json").read_text())
    assert results["random_weights"] is True and results["provenance"]["model"]["source"] == "random"
    assert "RANDOM WEIGHTS" in (run / "results.md").read_text() and "RANDOM WEIGHTS" in out


def test_kill_and_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """An evaluation killed after its first batch and resumed ends with the numbers of an uninterrupted run."""
    with contextlib.chdir(tmp_path):
        assert call("evaluate", *EVAL, "run_name=straight")[0] == 0
        with killed_at_batch(monkeypatch):
            call("evaluate", *EVAL, "run_name=killed")
        code, _, err = call("evaluate", *EVAL, "run_name=killed", "resume=true")
        assert code == 0, err
    straight, resumed = (json.loads((tmp_path / "outputs" / "evaluate" / name / "results.json").read_text())
                         for name in ("straight", "killed"))
    assert straight["radii"] == resumed["radii"]


def test_url_checkpoint_cache_and_sha256(tmp_path, monkeypatch):
    """Served from a local HTTP server: a wrong sha256 is refused, the right one loads, two URLs ending in the same
    file name do not collide, and no temporary file survives."""
    import functools
    import http.server
    import threading

    from robust_seg.errors import CheckpointError
    from robust_seg.models.download import cache_path, resolve_weights_file

    served = tmp_path / "served"
    for sub, source in (("a", ASSET), ("b", CLEAN_ASSET)):
        (served / sub).mkdir(parents=True)
        (served / sub / "model.pt").write_bytes(source.read_bytes())
    monkeypatch.setenv("ROBUST_SEG_CACHE", str(tmp_path / "cache"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        right = hashlib.sha256(ASSET.read_bytes()).hexdigest()
        with pytest.raises(CheckpointError, match="sha256"):
            resolve_weights_file(f"{base}/a/model.pt", WRONG_SHA)
        assert not cache_path(f"{base}/a/model.pt").exists()
        first = resolve_weights_file(f"{base}/a/model.pt", right)
        second = resolve_weights_file(f"{base}/b/model.pt")
        assert first.path != second.path and first.sha256 == right
        assert second.sha256 == hashlib.sha256(CLEAN_ASSET.read_bytes()).hexdigest()
        with pytest.raises(CheckpointError, match="sha256"):  # checked again on every load
            resolve_weights_file(f"{base}/a/model.pt", WRONG_SHA)
        first.path.write_bytes(first.path.read_bytes()[:1000])  # the cached file is damaged later
        with pytest.raises(CheckpointError, match="changed since it was downloaded"):
            resolve_weights_file(f"{base}/a/model.pt")
        with contextlib.chdir(tmp_path):
            code, _, err = call("evaluate", *EVAL, f"model.checkpoint={base}/b/model.pt",
                                f"model.checkpoint_sha256={WRONG_SHA}")
        assert code == 2 and "sha256" in err.strip().splitlines()[-1]
        with contextlib.chdir(tmp_path):
            code, _, err = call("evaluate", *EVAL, f"model.checkpoint={base}/b/model.pt", "run_name=url")
        assert code == 0, err
    finally:
        server.shutdown()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def _wandb_history_steps(run_dir: Path) -> list[int]:
    """The history steps recorded in a run directory's offline W&B files (all runs of one id together)."""
    from wandb.proto import wandb_internal_pb2

    steps = []
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        data = path.read_bytes()
        position, block = 7, 32768  # header ':W&B' + magic + version, then LevelDB-log records in 32 KiB blocks
        payload = b""
        while position + 7 <= len(data):
            if block - position % block < 7:
                position += block - position % block
                continue
            length = int.from_bytes(data[position + 4: position + 6], "little")
            kind = data[position + 6]
            payload += data[position + 7: position + 7 + length]
            position += 7 + length
            if kind in (1, 4):  # full record or last fragment
                record = wandb_internal_pb2.Record()
                record.ParseFromString(payload)
                if record.WhichOneof("record_type") == "history":
                    steps.append(record.history.step.num)
                payload = b""
            elif kind == 0:
                break
    return steps


def test_resumed_training_continues_the_same_wandb_run(tmp_path, monkeypatch):
    from robust_seg.training import loop

    monkeypatch.setenv("WANDB_MODE", "offline")
    args = [*TRAIN, "logger=wandb", "logger.mode=offline", "schedule.epochs=3", "run_name=wb"]
    original = loop.RunLogger.log_epoch

    def killed_after_epoch_two(self, entry):
        if entry["epoch"] == 2:
            raise KeyboardInterrupt  # killed after the checkpoint of epoch 2, before logging it
        return original(self, entry)

    with contextlib.chdir(tmp_path):
        monkeypatch.setattr(loop.RunLogger, "log_epoch", killed_after_epoch_two)
        with pytest.raises(KeyboardInterrupt):
            call("train", *args)
        monkeypatch.setattr(loop.RunLogger, "log_epoch", original)
        code, _, err = call("train", *args, "resume=true")
        assert code == 0, err
    run = tmp_path / "outputs" / "train" / "wb"
    assert os.environ["WANDB_CACHE_DIR"] == str(run / "wandb" / "cache")  # W&B's cache under the run directory
    assert os.environ["WANDB_DATA_DIR"] == str(run / "wandb" / "data")
    ids = {p.name.rsplit("-", 1)[-1] for p in run.glob("wandb/offline-run-*")}
    assert len(ids) == 1 and len(list(run.glob("wandb/offline-run-*"))) == 2
    assert sorted(_wandb_history_steps(run)) == [1, 2, 3]


def test_a_non_zero_rank_following_rank_0_removes_its_own_empty_directory(tmp_path):
    """Hydra time-stamps each rank's directory; when rank 1's falls a second after rank 0's, rank 1 leaves its own
    (still empty) for rank 0's and removes it; a directory holding anything stays, and the shared one is never
    rank 1's to remove."""
    from robust_seg.run.directory import RunDirectory

    shared = tmp_path / "2026-12-04_14-04-41"
    for own, kept in ((tmp_path / "2026-12-04_14-04-42", False), (tmp_path / "with_a_file", True)):
        own.mkdir()
        if kept:
            (own / "notes.txt").write_text("mine")
        run = RunDirectory(own, is_main=False)
        run.follow(shared)
        assert (run.path, run.fresh, own.exists()) == (shared, False, kept)
