"""``python -m robust_seg.merge <run dirs or a multirun dir> [--output DIR]``: merge the shards of one evaluation.

The shards (``shard=k num_shards=N`` runs, e.g. the jobs of ``-m shard=0,1,2 num_shards=3`` under a local or SLURM
launcher) must share one fingerprint, be finished, and cover every image exactly once; the merged reports equal
those of one process (``robust_seg.evaluation.shards``). Problems are one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from robust_seg.cli import EXIT_USER_ERROR, one_line
from robust_seg.errors import RobustSegError


def merge(paths: list[str | Path], output: str | Path | None = None) -> dict:
    """Merge the shard run directories at or below ``paths`` into ``output`` (default: ``<their parent>/merged``)."""
    from omegaconf import OmegaConf

    from robust_seg.evaluation.driver import merge_into
    from robust_seg.evaluation.shards import MergeError, find_shard_directories, load_shard_state
    from robust_seg.run_directory import RunDirectory

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
    run = RunDirectory(output, job_name="merge")
    try:
        from robust_seg.evaluation.shards import merge_states

        merge_states(directories)  # every check before the output directory is written
        run.accept(cfg)
        return merge_into(cfg, directories, run)
    except BaseException:
        run.close(failed=True)
        raise
    finally:
        run.detach_log()


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
