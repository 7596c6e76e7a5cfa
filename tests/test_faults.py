"""Nothing silently wrong, nothing lost: one writer per run directory, non-finite logits off the clean point,
damaged state files, and a table of faults (integers, paths, permissions, a full disk, interrupted merges,
invalid options, mismatched experiments, refused multiruns, Python API inputs): each ends in one readable line,
with a non-zero exit, no traceback, an existing run directory unchanged and no new directory left.

The entry points run in-process (``tests.test_run_integrity.call``). Permission faults are injected (the tests
run as root, whom file modes do not stop); a full disk is simulated at ``torch.save``.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.conftest import ROOT, call, run_in_process
from tests.test_run_integrity import EVAL, TRAIN, snapshot

SHARD = ["logger=none", "dataset.synthetic.num_val=4", "max_images=4", "batch_size=2", "attack=none",
         "num_shards=2"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """One finished evaluation and training run (``existing``), two finished shards, and a file in the way."""
    root = tmp_path_factory.mktemp("faults")
    with contextlib.chdir(root):
        for module, base in (("evaluate", EVAL), ("train", TRAIN)):
            code, _, err = call(module, *base, "run_name=existing")
            assert code == 0, err
        for shard in (0, 1):
            code, _, err = call("evaluate", *SHARD, f"shard={shard}", f"hydra.run.dir={root}/shards/{shard}")
            assert code == 0, err
    (root / "afile").write_text("in the way")
    return root


def _deny(monkeypatch, prefix: Path, *, reading: bool = False) -> None:
    """Every write below ``prefix`` (or read, with ``reading``) fails with EACCES, as for a user without access."""
    prefix = str(prefix)

    def guard(path) -> None:
        if str(os.fspath(path)).startswith(prefix):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_open, real_os_open, real_makedirs, real_mkdir = open, os.open, os.makedirs, os.mkdir

    def patched_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, Path)) and (reading or any(c in mode for c in "wax+")):
            guard(file)
        return real_open(file, mode, *args, **kwargs)

    def patched_os_open(path, flags, *args, **kwargs):
        if reading or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            guard(path)
        return real_os_open(path, flags, *args, **kwargs)

    def patched_makedirs(name, *args, **kwargs):
        if not os.path.isdir(name):
            guard(name)
        return real_makedirs(name, *args, **kwargs)

    def patched_mkdir(path, *args, **kwargs):
        guard(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", patched_mkdir)
    monkeypatch.setattr("builtins.open", patched_open)
    monkeypatch.setattr(os, "open", patched_os_open)
    monkeypatch.setattr(os, "makedirs", patched_makedirs)


def _truncated_copy(source: Path, target: Path, name: str) -> Path:
    shutil.copytree(source, target)
    data = (target / name).read_bytes()
    (target / name).write_bytes(data[: len(data) // 3])
    return target


# (id, entry point, base overrides, overrides, a fragment of the one line, set-up)
CASES = [
    # integers beyond their type
    ("huge batch", "evaluate", EVAL, ["batch_size=99999999999999999999999"], "beyond the 64-bit integers", None),
    ("huge seed", "evaluate", EVAL, ["seed=18446744073709551616"], "seed=18446744073709551616", None),
    ("huge attack seed", "evaluate", EVAL, ["attack.seed=18446744073709551616"], "attack.seed=", None),
    ("negative dataset seed", "evaluate", EVAL, ["dataset.seed=-1"], "a seed is an integer", None),
    ("huge max_images", "evaluate", EVAL, ["max_images=99999999999999999999"], "max_images=", None),
    ("huge iterations", "evaluate", EVAL, ["attack.options.iterations=99999999999999999999"], "iterations=", None),
    ("huge epochs", "train", TRAIN, ["schedule.epochs=99999999999999999999"], "schedule.epochs=", None),
    ("negative train seed", "train", TRAIN, ["seed=-5"], "a seed is an integer", None),
    # paths
    ("run dir is a file", "evaluate", EVAL, ["hydra.run.dir={root}/afile"], "a file is in the way", None),
    ("run dir below a file", "evaluate", EVAL, ["hydra.run.dir={root}/afile/sub"], "a file is in the way", None),
    ("run_name with a slash", "evaluate", EVAL, ["run_name=a/b"], "run_name='a/b'", None),
    ("run_name ..", "evaluate", EVAL, ["run_name=.."], "run_name='..'", None),
    ("run_name hidden", "evaluate", EVAL, ["run_name=.hidden"], "not starting with '.'", None),
    ("run_name with a space", "evaluate", EVAL, ["run_name=a b"], "not ' '", None),
    ("run_name with a star", "train", TRAIN, ["run_name=x*y"], "not '*'", None),
    # permissions
    ("read-only output", "evaluate", EVAL, ["hydra.run.dir={root}/readonly/run"], "permission denied", "deny"),
    ("read-only run on resume", "evaluate", EVAL, ["run_name=existing", "resume=true"], "cannot write the run "
     "directory", "deny-existing"),
    ("unreadable checkpoint", "evaluate", EVAL, ["model.checkpoint={root}/secret.pt"], "secret.pt", "deny-read"),
    # damaged state files
    ("truncated evaluation state", "evaluate", EVAL, ["hydra.run.dir={root}/damaged", "resume=true"],
     "evaluation_state.pt is damaged", "truncate-eval"),
    ("truncated training checkpoint", "train", TRAIN, ["hydra.run.dir={root}/damaged_train", "resume=true"],
     "is damaged", "truncate-train"),
    # invalid attack options
    ("schedule reduced", "evaluate", EVAL, ["attack.options.schedule=reduced"], "did you mean 'red'", None),
    ("loss_schedule", "evaluate", EVAL, ["++attack.options.loss_schedule=epoch"], "loss_schedule='epoch'", None),
    # experiments of the other entry point, budgets
    ("evaluation experiment in train", "train", TRAIN, ["experiment=table3_robust_models"],
     "not an experiment of python -m robust_seg.train", None),
    ("training experiment in evaluate", "evaluate", EVAL, ["experiment=train_paper"],
     "not an experiment of python -m robust_seg.evaluate", None),
    ("warmup longer than training", "train", TRAIN, ["schedule.warmup_epochs=5"], "schedule.warmup_epochs=5", None),
    # refused multiruns and launchers
    ("refused multirun composition", "evaluate", EVAL, ["-m", "attack=apgd,nonexistent"], "attack/nonexistent", None),
    ("refused multirun jobs", "evaluate", EVAL, ["-m", "batch_size=0"], "batch_size=0", None),
    ("slurm without slurm", "evaluate", EVAL, ["-m", "hydra/launcher=slurm"], "needs a SLURM cluster", None),
    # did you mean
    ("mistyped key", "evaluate", EVAL, ["max_image=4"], "did you mean 'max_images'", None),
    ("mistyped nested key", "evaluate", EVAL, ["dataset.protocl=sea"], "did you mean 'dataset.protocol'", None),
    ("mistyped group option", "evaluate", EVAL, ["attack=apdg"], "did you mean 'apgd'", None),
    ("mistyped train key", "train", TRAIN, ["schedule.epoch=3"], "did you mean 'schedule.epochs'", None),
]


@pytest.mark.parametrize("name, module, base, overrides, fragment, setup", CASES, ids=[c[0] for c in CASES])
def test_fault_is_one_line_and_changes_nothing(ws, monkeypatch, name, module, base, overrides, fragment, setup):
    root = ws
    outputs = root / "outputs" / module
    if setup == "deny-read":
        shutil.copy(ROOT / "robust_seg" / "assets" / "small_upernet_convnext_synthetic.pt", root / "secret.pt")
    if setup == "truncate-eval" and not (root / "damaged").exists():
        _truncated_copy(outputs / "existing", root / "damaged", "evaluation_state.pt")
    if setup == "truncate-train" and not (root / "damaged_train").exists():
        _truncated_copy(outputs / "existing", root / "damaged_train", "checkpoints/last.pt")
    watched = [outputs / "existing", root / "damaged", root / "damaged_train"]
    before = {str(d): snapshot(d) for d in watched if d.exists()}
    tree_before = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir())
    if setup == "deny":
        _deny(monkeypatch, root / "readonly")
    if setup == "deny-existing":
        _deny(monkeypatch, outputs / "existing")
    if setup == "deny-read":
        _deny(monkeypatch, root / "secret.pt", reading=True)
    args = [o.replace("{root}", str(root)) for o in overrides]
    multirun = [a for a in args if a == "-m"]
    args = [a for a in args if a != "-m"]
    with contextlib.chdir(root):
        code, out, err = call(module, *multirun, *base, *args)
    monkeypatch.undo()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, (name, out[-1500:], err[-1500:])
    assert "Traceback" not in out + err, (name, err[-3000:])
    assert lines and lines[-1].startswith("error: ") and fragment in lines[-1], (name, lines[-1:])
    assert {str(d): snapshot(d) for d in watched if d.exists()} == before, f"{name} changed a run directory"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()) == tree_before, \
        f"{name} left a directory"


def test_damaged_shard_state_names_the_file_in_the_merge(ws, tmp_path):
    from robust_seg.merge import main as merge_main

    copy = _truncated_copy(ws / "shards", tmp_path / "shards", "0/evaluation_state.pt")
    err = _merge_error(merge_main, [str(copy / "0"), str(copy / "1")])
    assert "evaluation_state.pt is damaged" in err and "evaluate this shard again" in err


def _merge_error(merge_main, argv) -> str:
    import io

    stream = io.StringIO()
    with contextlib.redirect_stderr(stream), pytest.raises(SystemExit) as exit_:
        merge_main(argv)
    assert exit_.value.code == 2 and "Traceback" not in stream.getvalue()
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_a_merge_killed_half_way_leaves_nothing_and_the_next_merge_succeeds(ws, tmp_path, monkeypatch):
    import robust_seg.evaluation.driver as driver
    from robust_seg.merge import merge

    shards = [str(ws / "shards" / "0"), str(ws / "shards" / "1")]
    output = tmp_path / "merged"
    real_report = driver.report

    def killed(*args, **kwargs):
        real_report(*args, **kwargs)  # the reports are written, then the process dies before the merge ends
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "report", killed)
    with pytest.raises(KeyboardInterrupt):
        merge(shards, output)
    monkeypatch.undo()
    assert not output.exists() and not list(tmp_path.iterdir()), "a killed merge left files"
    results = merge(shards, output)
    assert results["run_directory"] == str(output) and (output / "results.json").is_file()
    assert not list(tmp_path.glob(".merged.partial-*"))
    with pytest.raises(Exception, match="already holds merged results"):
        merge(shards, output)


def test_full_disk_is_one_line_and_the_run_resumes(tmp_path, monkeypatch):
    """torch.save fails as on a full disk during the second batch: one line naming the file and the fix; the
    run directory keeps the first batch and a resume finishes it with the numbers of an uninterrupted run."""
    import robust_seg.reporting.files as files

    calls = {"count": 0}
    real_save = torch.save

    def full_disk_save(obj, stream, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                               "data/0: file write failed")
        return real_save(obj, stream, *args, **kwargs)

    with contextlib.chdir(tmp_path):
        monkeypatch.setattr(files.torch, "save", full_disk_save)
        monkeypatch.setattr(files, "_disk_full", lambda directory, margin=0: True)
        code, _, err = call("evaluate", *EVAL, "run_name=full")
        monkeypatch.undo()
        lines = err.strip().splitlines()
        assert code == 2 and "Traceback" not in err and "the disk is full" in lines[-1], lines[-3:]
        assert "evaluation_state.pt" in lines[-1] and "resume=true" in lines[-1]
        code, _, err = call("evaluate", *EVAL, "run_name=full", "resume=true")
        assert code == 0, err
        code, _, err = call("evaluate", *EVAL, "run_name=whole")
        assert code == 0, err
    resumed = json.loads((tmp_path / "outputs/evaluate/full/results.json").read_text())
    whole = json.loads((tmp_path / "outputs/evaluate/whole/results.json").read_text())
    assert resumed["radii"] == whole["radii"]


# ----------------------------------------------------------------------------------------------- one writer
def _start(tmp_path: Path, module: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", f"robust_seg.{module}", *overrides], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("module, base, extra", [
    ("evaluate", EVAL, ["attack.options.iterations=10", "max_images=4", "batch_size=1"]),
    # the same lock (robust_seg/run/cli.run_job) taken by the other entry point: in the slow set
    pytest.param("train", TRAIN, ["schedule.epochs=3", "robust_eval.iterations=2"], marks=pytest.mark.slow),
])
def test_a_second_process_on_a_run_directory_is_refused(tmp_path, module, base, extra):
    first = _start(tmp_path, module, *base, *extra, "run_name=shared")
    lock = tmp_path / "outputs" / module / "shared" / ".lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text()) and first.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before the second could start"
    second = run_in_process(module, *base, *extra, "run_name=shared", "resume=true",  # this test's own process
                            "seed=1" if module == "evaluate" else "seed=0", cwd=tmp_path)
    holder = json.loads(lock.read_text())
    assert second.returncode == 2 and "Traceback" not in second.stderr
    line = second.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and f"pid {first.pid}" in line and "is being written by" in line, line
    assert str(holder["pid"]) in line and holder["host"] in line
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert not lock.exists()
    alone = run_in_process(module, *base, *extra, "run_name=alone", cwd=tmp_path)
    assert alone.returncode == 0  # the first run's numbers are those of a run alone
    name = "results.json" if module == "evaluate" else "train_results.json"
    shared, single = (json.loads((tmp_path / "outputs" / module / n / name).read_text()) for n in ("shared", "alone"))
    if module == "evaluate":
        assert shared["radii"] == single["radii"]
        assert len((tmp_path / "outputs/evaluate/shared/batches.jsonl").read_text().splitlines()) == 4
    else:
        drop = ("seconds",)
        assert [{k: v for k, v in e.items() if k not in drop} for e in shared["history"]] == \
            [{k: v for k, v in e.items() if k not in drop} for e in single["history"]]


def test_a_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    run = tmp_path / "outputs" / "evaluate" / "stale"
    run.mkdir(parents=True)
    (run / ".lock").write_text(json.dumps({"pid": 999999, "host": "gone", "started": "2026-01-01 00:00:00"}))
    with contextlib.chdir(tmp_path):
        code, _, err = call("evaluate", *EVAL, "run_name=stale")
    assert code == 0, err
    assert "taking over the run directory's lock left by pid 999999 on host gone" in \
        (run / "evaluate.log").read_text()
    assert not (run / ".lock").exists() and (run / "results.json").is_file()


# ----------------------------------------------------------------------------------------------- non-finite
class NaNOffClean(nn.Module):
    """The shipped model, but NaN logits for every image that is not one of the given clean images (or a constant
    test image): finite at the clean point, broken off it."""

    def __init__(self, model: nn.Module, clean: torch.Tensor):
        super().__init__()
        self.model, self.clean = model, clean

    def forward(self, images):
        logits = self.model(images)
        moved = torch.tensor([float(image.std()) > 0 and not any(torch.equal(image, c) for c in self.clean)
                              for image in images])
        return torch.where(moved[:, None, None, None], torch.full_like(logits, float("nan")), logits)


def test_nan_logits_off_the_clean_point_are_an_error_naming_batch_radius_and_attack(tmp_path):
    import robust_seg as rs
    from robust_seg.api import compose
    from robust_seg.data import build_dataset
    from robust_seg.errors import NonFiniteLogits

    dataset = build_dataset(compose("evaluate", []).dataset, split="val", train=False)
    model = NaNOffClean(rs.load_model("embedded"), torch.stack([dataset[i]["image"] for i in range(2)]))
    with contextlib.chdir(tmp_path), pytest.raises(NonFiniteLogits) as error:
        rs.evaluate(model, attack="apgd", eps=["0", "8/255"], iterations=2, overrides=["max_images=2",
                                                                                      "batch_size=2"])
    message = str(error.value)
    assert "\n" not in message and "NaN or infinite on 2 of 2 attacked images of batch 0" in message
    assert "at radius 8/255" in message and "APGD" in message and "finite on the clean images" in message


# ----------------------------------------------------------------------------------------------- API inputs
class _Wrap(nn.Module):
    def __init__(self, model, change):
        super().__init__()
        self.model, self.change = model, change

    def forward(self, images):
        return self.change(self.model(images))


@pytest.mark.parametrize("what, change, images, labels, fragment", [
    ("batch size", lambda z: z[:1], None, None, "keep the batch size"),
    ("device", lambda z: z.to("meta"), None, None, "logits on meta"),
    ("labels beyond the classes", None, None, lambda y: y.clamp(max=5) + 3, "outside the model's 6 classes"),
    ("images in [0, 255]", None, lambda x: x * 255, None, "divide 8-bit images by 255"),
    ("labels of another shape", None, None, lambda y: y[:, :10], "labels must be an integer tensor"),
    ("float labels", None, None, lambda y: y.float(), "labels must be an integer tensor"),
])
def test_api_inputs_are_named(what, change, images, labels, fragment):
    import robust_seg as rs
    from robust_seg.attacks.inputs import AttackInputError
    from robust_seg.data import build_dataset

    model = rs.load_model("embedded")
    if change is not None:
        model = _Wrap(model, change)
    from robust_seg.api import compose

    dataset = build_dataset(compose("evaluate", []).dataset, split="val", train=False)
    x = torch.stack([dataset[i]["image"] for i in range(2)])
    y = torch.stack([dataset[i]["label"] for i in range(2)])
    x = images(x) if images else x
    y = labels(y) if labels else y
    with pytest.raises(AttackInputError, match=None) as error:
        rs.attacks.apgd(model, x, y, eps=8 / 255, iterations=2)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_api_evaluate_names_a_module_that_changes_the_batch_size(tmp_path):
    import robust_seg as rs
    from robust_seg.errors import RobustSegError

    model = _Wrap(rs.load_model("embedded"), lambda z: z[:1])
    with contextlib.chdir(tmp_path), pytest.raises(RobustSegError, match="batch size"):
        rs.evaluate(model, attack="apgd", eps=["8/255"], iterations=2, overrides=["max_images=2"])
