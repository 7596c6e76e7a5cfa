"""``python -m robust_seg.table <run or multirun dirs...> [--rows ...] [--columns ...]``: a table from any runs.

Reads every run below the given directories (a multirun folder, several, single runs, or a quoted glob), finds the
overrides that vary between them and lays them out (``robust_seg.reporting.grid``): by default rows = the varying
model overrides, columns = the other varying overrides x radius x metric; a varying seed is pooled into mean ±
standard deviation; any other difference on no axis is flagged and kept apart. ``--layout table1`` (or any paper
table or zoo leaderboard of ``scripts/make_table.py``) lays the same runs out as that paper table instead.

    python -m robust_seg.table outputs/evaluate/multirun/my_grid
    python -m robust_seg.table outputs/evaluate/multirun/my_grid --rows model --columns attack,radius --metrics acc
    python -m robust_seg.table 'outputs/evaluate/multirun/seed_*' --format latex --output table.tex
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from robust_seg.errors import EXIT_USER_ERROR


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _directories(patterns: list[str]) -> list[Path]:
    directories = []
    for pattern in patterns:
        matches = [pattern] if Path(pattern).exists() else sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"no such run directory: {pattern} (give a run or multirun directory, e.g. "
                                    "outputs/evaluate/multirun/<name>)")
        directories += [Path(match) for match in matches if Path(match).is_dir()]
    return directories


def log_to_wandb(text_table, mode: str, directory: Path) -> None:
    """The table as a W&B table in a run of job type ``table`` whose files lie under ``directory``."""
    from types import SimpleNamespace

    from robust_seg.reporting.grid import wandb_rows
    from robust_seg.reporting.logger import RunLogger

    cfg = SimpleNamespace(log_images=0, backend="wandb", mode=mode, project="robust_seg", entity=None, group=None,
                          tags=["table"])
    directory.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(cfg, directory, {"title": text_table.title}, job_type="table")
    logger.table("table", *wandb_rows(text_table))
    logger.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m robust_seg.table", description=__doc__.splitlines()[0],
                                     epilog="Axes: any override that varies between the runs (attack, model, "
                                            "attack.options.loss, ...), and radius, metric, component.")
    parser.add_argument("run_dirs", nargs="+", help="run or multirun directories, or quoted globs")
    parser.add_argument("--rows", type=_list, help="comma-separated axes of the rows")
    parser.add_argument("--columns", type=_list, help="comma-separated axes of the columns")
    parser.add_argument("--radii", type=_list, help="only these radii, as the runs wrote them (e.g. 0,8/255)")
    parser.add_argument("--metrics", type=_list, help="acc, miou (default), median_norm, mean_norm (minimal-norm)")
    parser.add_argument("--components", type=_list,
                        help="an ensemble's components (default worst_case; 'all': every loss of SEA)")
    parser.add_argument("--decimals", type=int, default=1)
    parser.add_argument("--format", choices=("md", "csv", "latex"), default="md")
    parser.add_argument("--output", type=Path, help="write the table here instead of stdout")
    parser.add_argument("--wandb", choices=("offline", "online"),
                        help="also log the table to W&B (files under <first directory>/table_wandb)")
    parser.add_argument("--layout", help="a paper table or zoo leaderboard (table1, ..., thesis_6.2, zoo_pascal_voc)"
                                         " instead of the generic layout")
    args = parser.parse_args(argv)
    try:
        directories = _directories(args.run_dirs)
        if args.layout:
            from robust_seg.reporting.leaderboard import is_leaderboard, make_leaderboard
            from robust_seg.reporting.paper_tables import make_table

            build = make_leaderboard if is_leaderboard(args.layout) else make_table
            text = build(args.layout, directories, args.format)
        else:
            from robust_seg.reporting.grid import GRID_FORMATS, build_grid

            table = build_grid(directories, args.rows, args.columns, args.radii, args.metrics, args.components,
                               args.decimals)
            text = GRID_FORMATS[args.format](table)
            if args.wandb:
                log_to_wandb(table, args.wandb, directories[0] / "table_wandb")
    except (FileNotFoundError, ValueError, KeyError) as error:
        from robust_seg.errors import one_line

        message = error.args[0] if isinstance(error, KeyError) and error.args else one_line(error)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.output:
        from robust_seg.reporting.files import atomic_write_text

        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
