"""Sharded evaluation: images split over processes (torchrun) or independent jobs, merged exactly.

The (``max_images``-limited) split is cut into the batches a one-process run would form; shard k of N takes the
batches ``k, k + N, k + 2N, ...``: an interleaved assignment, so that cheap and expensive images (SEA skips solved
ones) spread evenly, and every image is attacked in the very batch it has in a one-process run. Every image draws
its attack randomness from its index in the dataset (``ResolvedAttack.run(image_indices=...)``). Together these
make a shard's per-image results bit-identical to the one-process run's: the same randomness, and the same batch
for the model's kernels (a CPU's or GPU's convolution kernels differ in the last bits between batch sizes, which
would move floating-point outcomes such as minimal norms). A shard's ``evaluation_state.pt`` holds integer confusion matrices,
per-image values keyed by dataset index and the calibration sums: the merge adds the matrices and sums and puts
the per-image values back in dataset order, which is exactly the one-process evaluation.

Two ways to run shards: ``torchrun --nproc_per_node=N -m robust_seg.evaluate ...`` (rank r evaluates shard r into
``<run dir>/shards/<r>``, rank 0 merges into the run directory), and ``shard=k num_shards=N`` (independent jobs,
e.g. a Hydra multirun over ``shard`` with the submitit SLURM launcher), merged by ``python -m robust_seg.merge``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from robust_seg.errors import ConfigError
from robust_seg.evaluation.calibration import EvaluationCalibration
from robust_seg.evaluation.state import ComponentTotals
from robust_seg.names import WORST
from robust_seg.reporting.files import load_state

STATE_FILE = "evaluation_state.pt"
SHARDS_DIR = "shards"
SHARD_KEYS = ("shard", "num_shards")
"""Fingerprint keys in which the shards of one evaluation differ."""


class MergeError(ConfigError):
    """Shards that cannot be merged (missing, duplicated, unfinished, or of different evaluations)."""


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def indices(self, total: int, batch_size: int) -> list[int]:
        """The positions (in the limited split) of this shard's images: the one-process batches k, k + N, ..."""
        batches = range(self.index, -(-total // batch_size), self.count)
        return [i for b in batches for i in range(b * batch_size, min((b + 1) * batch_size, total))]

    @property
    def whole(self) -> bool:
        return self.count == 1

    def describe(self) -> str:
        return f"shard {self.index} of {self.count}"


def merge_key(fingerprint: dict) -> dict:
    """The part of a shard's fingerprint all shards of one evaluation share."""
    return {k: v for k, v in fingerprint.items() if k not in SHARD_KEYS}


def load_shard_state(directory: Path) -> dict:
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise MergeError(f"{directory} holds no evaluation ({STATE_FILE} missing): not a shard run directory")
    state = load_state(path, "the shard's evaluation state", "evaluate this shard again (delete its run directory "
                       "and rerun it, or resume=true after deleting the state file), then merge")
    if "shard" not in state:
        raise MergeError(f"{directory} is an evaluation without shard information (written by an older version)")
    return state


def find_shard_directories(paths: list[str | Path]) -> list[Path]:
    """The run directories (holding ``evaluation_state.pt``) at or below ``paths``, in sorted order."""
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise MergeError(f"{path} does not exist")
        found += [path] if (path / STATE_FILE).is_file() else sorted(p.parent for p in path.rglob(STATE_FILE))
    if not found:
        raise MergeError(f"no evaluation run directory (with {STATE_FILE}) under {', '.join(map(str, paths))}")
    return list(dict.fromkeys(found))


def merge_states(directories: list[Path]) -> dict:
    """Check that the shards in ``directories`` are one whole evaluation and merge their states.

    Refused (one line each): shards of different evaluations (fingerprints differ, naming the keys), a missing or
    duplicated shard, an unfinished shard, images not covered exactly once.
    """
    from robust_seg.run.provenance import fingerprint_differences

    states = [(directory, load_shard_state(directory)) for directory in directories]
    first_dir, first = states[0]
    reference = merge_key(json.loads(first["fingerprint"]))
    count = int(first["shard"][1])
    seen: dict[int, Path] = {}
    for directory, state in states:
        differences = fingerprint_differences(reference, merge_key(json.loads(state["fingerprint"])))
        if differences:
            raise MergeError(f"{directory} is a shard of another evaluation than {first_dir} ("
                             + "; ".join(differences[:4]) + "): merge only shards of one evaluation")
        index, shard_count = int(state["shard"][0]), int(state["shard"][1])
        if shard_count != count:
            raise MergeError(f"{directory} is one of {shard_count} shards but {first_dir} one of {count}")
        if index in seen:
            raise MergeError(f"shard {index} of {count} appears twice: {seen[index]} and {directory}")
        seen[index] = directory
        if not state.get("finished"):
            raise MergeError(f"shard {index} of {count} in {directory} is unfinished ({state['next_batch']} "
                             "batches done): resume it with resume=true, then merge")
    missing = sorted(set(range(count)) - set(seen))
    if missing:
        raise MergeError(f"shard(s) {', '.join(map(str, missing))} of {count} missing (have "
                         f"{', '.join(map(str, sorted(seen)))}): give every shard's run directory")
    ordered = [state for _, state in sorted(((int(s["shard"][0]), s) for _, s in states), key=lambda p: p[0])]
    # a shard may hold no image (more shards than batches): it contributes nothing
    keys = list(dict.fromkeys(key for s in ordered for key in s["totals"]))
    totals = {key: {name: ComponentTotals.merged([ComponentTotals.from_state(s["totals"][key][name])
                                                   for s in ordered if name in s["totals"].get(key, {})])
                    for name in dict.fromkeys(n for s in ordered for n in s["totals"].get(key, {}))}
              for key in keys}
    total_images = int(first["total_images"])
    for key, components in totals.items():
        if components[WORST].indices != list(range(total_images)):
            raise MergeError(f"the shards do not cover the {total_images} images exactly once at radius {key}")
    calibration = None
    for state in (s for s in ordered if s.get("calibration") is not None):
        if calibration is None:
            calibration = EvaluationCalibration.from_state(state["calibration"])
        else:
            calibration.merge(EvaluationCalibration.from_state(state["calibration"]))
    diagnostics = None
    if any(s.get("diagnostics") is not None for s in ordered):
        from robust_seg.evaluation.diagnostics import Diagnostics

        diagnostics = Diagnostics.merged([Diagnostics.from_state(s["diagnostics"]) for s in ordered
                                          if s.get("diagnostics") is not None])
    return {"fingerprint": first["fingerprint"], "provenance": json.loads(first["provenance"]),
            "totals": totals, "calibration": calibration, "seconds": sum(s["seconds"] for s in ordered),
            "figure": ordered[0]["figure"], "shards": count, "diagnostics": diagnostics}
