"""``python -m robust_seg.merge <run dirs or a multirun dir> [--output DIR]``: merge the shards of one evaluation.

The shards (``shard=k num_shards=N`` runs, e.g. the jobs of ``-m shard=0,1,2 num_shards=3`` under a local or SLURM
launcher) must share one fingerprint, be finished, and cover every image exactly once; the merged reports equal
those of one process (``robust_seg.evaluation.shards``). Problems are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from robust_seg.errors import EXIT_USER_ERROR, RobustSegError, one_line


def merge(paths: list[str | Path], output: str | Path | None = None) -> dict:
    """Merge the shard run directories at or below ``paths`` into ``output`` (default: ``<their parent>/merged``)."""
    from omegaconf import OmegaConf

    from robust_seg.evaluation.driver import merge_into
    from robust_seg.evaluation.shards import MergeError, find_shard_directories, load_shard_state
    from robust_seg.run.directory import RunDirectory

    import json

    directories = find_shard_directories(list(paths))
    first = load_shard_state(directories[0])
    cfg = OmegaConf.create(json.loads(first["provenance"])["config"])
    if output is None:
        output = Path(os.path.commonpath([str(d.resolve()) for d in directories])) / "merged"
        if len(directories) == 1:
            output = directories[0].parent / "merged"
    output = Path(output)
    if (output / "results.json").exists():
        raise MergeError(f"{output} already holds merged results: give another --output")
    if output.exists() and any(output.iterdir()):
        raise MergeError(f"{output} exists and is not empty: give another --output")
    from robust_seg.evaluation.shards import merge_states

    merge_states(directories)  # every check before anything is written
    _remove_abandoned(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-{os.getpid()}-", dir=output.parent))
    except OSError as error:
        raise MergeError(f"cannot write {output.parent}: {error.strerror.lower()} (give a writable --output)") from None
    run = RunDirectory(partial, job_name="merge")
    try:
        run.accept(cfg)
        results = merge_into(cfg, directories, run)
        run.detach_log()
        if output.exists():
            output.rmdir()  # empty (checked above)
        os.replace(partial, output)  # the merged reports appear complete or not at all
    except BaseException:
        run.detach_log()
        shutil.rmtree(partial, ignore_errors=True)
        raise
    results["run_directory"] = str(output)
    return results


def _remove_abandoned(output: Path) -> None:
    """Remove the partial outputs of merges into ``output`` that were killed (their process no longer runs)."""
    for partial in output.parent.glob(f".{output.name}.partial-*"):
        pid = partial.name[len(f".{output.name}.partial-"):].split("-")[0]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m robust_seg.merge", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="shard run directories, or a directory (multirun) holding them")
    parser.add_argument("--output", help="where the merged reports go (default: <common parent>/merged)")
    args = parser.parse_args(argv)
    try:
        results = merge(args.paths, args.output)
    except RobustSegError as error:
        print(f"error: {one_line(error)}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)
    print(results["report"])
    print(f"merged {results['provenance']['shards']} shards into {results['run_directory']}")


if __name__ == "__main__":
    main()
