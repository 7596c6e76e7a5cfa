"""Sharded evaluation: 3 independent shards + merge and a 2-process torchrun equal one process exactly."""
from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, assert_markdown_tables, call, killed_at_batch, script

BASE = ["logger=none", "dataset.synthetic.num_val=5", "max_images=5", "batch_size=2", "runtime.threads=1"]
KINDS = {
    "sea": ["attack=sea", "attack.eps=[0,8/255]", "attack.options.iterations=3"],
    "apgd": ["attack=apgd", "attack.eps=[8/255]", "attack.options.iterations=3"],
    "pgd": ["attack=pgd", "attack.eps=[8/255]", "attack.options.iterations=3", "attack.options.step_size=0.01"],
    "square": ["attack=square", "attack.eps=[16/255]", "attack.options.queries=20"],
    "alma_prox": ["attack=alma_prox", "attack.options.iterations=5", "model=embedded_clean"],
    "calibration": ["attack=apgd", "attack.eps=[0,4/255]", "attack.options.iterations=2", "calibration=true",
                    "calibration_temperature=2"],
    "corruptions": ["attack=corruptions", "attack.options.corruptions=[gaussian_noise,fog]",
                    "attack.options.severities=[0,2]"],
}


def _table(results: dict) -> str:
    """The report's tables without the wall-clock figures (the cost table's seconds, the wall time)."""
    lines = results["report"].split("\n\n", 2)[-1].split("Wall time")[0].splitlines()
    return "\n".join(line for line in lines if not line.startswith(("| forwards", "Corruption time")) and not (
        line.startswith("| ") and lines.index(line) > 0 and lines[lines.index(line) - 2].startswith("| forwards")))


def _per_image(results: dict) -> dict:
    """Per-image accuracies and (minimal-norm) norms and successes of every component, radius by radius."""
    if "minimal_norm" in results:
        return {k: results["minimal_norm"]["per_image"][k] for k in ("norm", "success", "apsr")}
    return {key: {name: (entry["per_image_acc"], entry["per_image"]["apsr"]) for name, entry in components.items()}
            for key, components in results["radii"].items()}


def _evaluate(tmp_path: Path, *args: str) -> dict:
    with contextlib.chdir(tmp_path):
        code, out, err = call("evaluate", *BASE, *args)
    assert code == 0, err[-3000:]
    run = Path(out.strip().splitlines()[-1].split("run directory: ")[-1])
    report = (run / "results.md").read_text()
    assert_markdown_tables(report)  # every table the report writes has its columns
    return json.loads((run / "results.json").read_text()) | {"report": report, "dir": run}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    """The one-process run of a kind, run once per worker process and shared by the tests that compare with it."""
    runs: dict[str, dict] = {}

    def get(kind: str) -> dict:
        if kind not in runs:
            runs[kind] = _evaluate(tmp_path_factory.mktemp(f"single_{kind}"), *KINDS[kind], "run_name=single")
        return runs[kind]
    return get


def _merge(*paths: Path, output: Path) -> dict:
    from robust_seg.merge import merge

    return merge(list(paths), output)


def _confusions(state_totals: dict) -> dict:
    return {key: {name: (c.confusion if hasattr(c, "confusion") else c["confusion"]).tolist()
                  for name, c in comps.items()} for key, comps in state_totals.items()}


COVERED_ELSEWHERE = ("apgd", "pgd", "calibration")
"""Kinds whose 3-shard merge is in the slow set: APGD and PGD shard as SEA does (a white-box attack with per-image
state; SEA runs APGD); a calibrated evaluation's merge is checked by the torchrun test and by the test of more
shards than batches below."""


@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k in COVERED_ELSEWHERE else k
                                  for k in KINDS])
def test_three_shards_merged_equal_one_process(tmp_path, kind, single_run):
    from robust_seg.evaluation.shards import merge_states

    single = single_run(kind)
    shards = [_evaluate(tmp_path, *KINDS[kind], f"shard={k}", "num_shards=3", f"run_name=shard{k}") for k in range(3)]
    assert [s["images"] for s in shards] == [2, 2, 1] and all("shard" in s for s in shards)  # batches 0, 1, 2
    merged = _merge(*(s["dir"] for s in shards), output=tmp_path / "merged")
    assert _per_image(merged) == _per_image(single)
    assert "merged from 3 shards" in merged["report"] and "merged from" not in single["report"]
    assert _table(merged) == _table(single)
    state = torch.load(single["dir"] / "evaluation_state.pt", weights_only=True)
    assert _confusions(merge_states([s["dir"] for s in shards])["totals"]) == _confusions(state["totals"])
    if kind == "calibration":
        assert merged["calibration"]["radii"] == single["calibration"]["radii"]
    assert merged["provenance"]["shards"] == 3


@pytest.mark.parametrize("kind", ["sea", "corruptions"])
def test_a_killed_shard_resumed_then_merged_equals_one_process(tmp_path, monkeypatch, kind, single_run):
    args = KINDS[kind]
    single = single_run(kind)
    shards = [_evaluate(tmp_path, *args, "shard=1", "num_shards=2",
                        "hydra.run.dir=outputs/evaluate/sharded/s1")]  # batch 1
    with contextlib.chdir(tmp_path), killed_at_batch(monkeypatch):  # shard 0: batches 0 and 2, killed in 2
        call("evaluate", *BASE, *args, "shard=0", "num_shards=2", "hydra.run.dir=outputs/evaluate/sharded/s0")
    from robust_seg.evaluation.shards import MergeError

    with pytest.raises(MergeError, match="shard 0 of 2 .* is unfinished"):
        _merge(shards[0]["dir"], tmp_path / "outputs/evaluate/sharded/s0", output=tmp_path / "early")
    shards.append(_evaluate(tmp_path, *args, "shard=0", "num_shards=2", "hydra.run.dir=outputs/evaluate/sharded/s0",
                            "resume=true"))
    merged = _merge(tmp_path / "outputs" / "evaluate" / "sharded", output=tmp_path / "merged")  # their parent
    assert _per_image(merged) == _per_image(single) and _table(merged) == _table(single)


def _merge_cli(*paths: Path) -> tuple[int, str]:
    import contextlib
    import io

    from robust_seg import merge

    err = io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            merge.main([str(p) for p in paths])
        except SystemExit as exit_:
            code = exit_.code
    return code, err.getvalue().strip().splitlines()[-1]


def test_merge_refuses_missing_duplicated_and_foreign_shards(tmp_path):
    args = [*KINDS["apgd"], "num_shards=3"]
    dirs = [_evaluate(tmp_path, *args, f"shard={k}", f"run_name=s{k}")["dir"] for k in range(3)]
    other_seed = _evaluate(tmp_path, *args, "shard=2", "attack.seed=5", "run_name=other")["dir"]
    again = _evaluate(tmp_path, *args, "shard=1", "run_name=again")["dir"]
    code, line = _merge_cli(dirs[0], dirs[1])
    assert code == 2 and line == "error: shard(s) 2 of 3 missing (have 0, 1): give every shard's run directory"
    code, line = _merge_cli(dirs[0], dirs[1], again, dirs[2])
    assert code == 2 and line.startswith("error: shard 1 of 3 appears twice")
    code, line = _merge_cli(dirs[0], dirs[1], other_seed)
    assert code == 2 and "is a shard of another evaluation" in line and "attack.seed: 0 -> 5" in line
    assert not (tmp_path / "outputs" / "evaluate" / "merged").exists()


def test_shard_options_are_checked():
    with contextlib.chdir(ROOT):
        code, _, err = call("evaluate", *BASE, "shard=3", "num_shards=3")
    assert code == 2 and "shard=3 with num_shards=3" in err


@pytest.mark.parametrize("launcher", ["processes", pytest.param("torchrun", marks=pytest.mark.slow)])
def test_two_processes_equal_one_process(tmp_path, launcher, single_run):
    """A calibrated evaluation in 2 processes (gloo), started by ``runtime.processes=2`` (torchrun's launch with
    forked workers) or by torchrun itself: rank r evaluates shard r, rank 0 merges; equal to one process. (The
    torchrun run is in the slow set: its workers run the same code, and tests/test_ddp.py launches torchrun.)"""
    single = single_run("calibration")
    args = [*BASE, *KINDS["calibration"], f"run_name={launcher}"]
    command = {"torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                            "-m", "robust_seg.evaluate", *args],
               "processes": [sys.executable, "-m", "robust_seg.evaluate", *args, "runtime.processes=2"]}[launcher]
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = tmp_path / "outputs" / "evaluate" / launcher
    merged = json.loads((run / "results.json").read_text()) | {"report": (run / "results.md").read_text()}
    assert _per_image(merged) == _per_image(single) and _table(merged) == _table(single)
    # the calibration sums of shards 0 (batches 0, 2) and 1 (batch 1) are added in another order than one process
    # adds them: float64 means may differ in their last bits (nll_image_mean here), no more
    numbers = script("regression_runs").numbers  # every number below a results tree, keyed by its path
    merged_numbers, single_numbers = numbers(merged["calibration"]["radii"]), numbers(single["calibration"]["radii"])
    assert merged_numbers.keys() == single_numbers.keys()
    assert all(a == b or math.isclose(a, b, rel_tol=1e-12) for a, b in zip(merged_numbers.values(),
                                                                            single_numbers.values()))
    assert sorted(p.name for p in (run / "shards").iterdir()) == ["0", "1"]
    assert completed.stdout.count("run directory:") == 1  # rank 0 alone reports


def test_runtime_processes_refuses_bad_input_in_one_line(tmp_path):
    """Every worker refuses the same bad value: the launcher prints the line once and exits 2, no traceback."""
    env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for bad, line in (("attack.eps=[8]", "error: attack.eps: radius 8 is larger than 1"),
                      ("runtime.processes=two", "error: runtime.processes='two': must be an integer >= 1")):
        completed = subprocess.run([sys.executable, "-m", "robust_seg.evaluate", *BASE, "runtime.processes=2", bad],
                                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 2, completed.stderr[-3000:]
        assert completed.stderr.startswith(line) and completed.stderr.count("\n") == 1, completed.stderr[-3000:]
    assert not (tmp_path / "outputs" / "evaluate").exists() or not any((tmp_path / "outputs" / "evaluate").iterdir())


def test_more_shards_than_batches_merge_to_one_process(tmp_path):
    """A shard without any image (3 shards of a 2-batch evaluation) contributes nothing and merges."""
    args = [*KINDS["apgd"], "calibration=true", "max_images=4", "batch_size=2"]
    single = _evaluate(tmp_path, *args, "run_name=single")
    shards = [_evaluate(tmp_path, *args, f"shard={k}", "num_shards=3", f"run_name=s{k}") for k in range(3)]
    assert shards[2]["images"] == 0
    merged = _merge(*(s["dir"] for s in shards), output=tmp_path / "merged")
    assert _per_image(merged) == _per_image(single) and _table(merged) == _table(single)
