"""Print a paper table from the run directories of its multirun, beside the published numbers.

    python scripts/make_table.py table1 outputs/evaluate/multirun/table1_sea_vs_baselines [--format md|csv|latex]

TABLE is a short name (table1 table2 table3 table4 table7 table8 table9 figure2 thesis_5.1 thesis_5.2
thesis_6.2), the experiment config's name, or a zoo leaderboard (zoo_pascal_voc, zoo_ade20k, zoo_cityscapes); RUN_DIR is a multirun directory or a job directory (several
may be given). Missing or failed jobs show as numbered gaps with the reason. See README.md, "Reproducing the papers".
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robust_seg.reporting.leaderboard import is_leaderboard, make_leaderboard  # noqa: E402
from robust_seg.reporting.paper_tables import TABLES, make_table  # noqa: E402
from robust_seg.reporting.render import FORMATS  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", help="one of: " + ", ".join(f"{s.name} ({s.experiment})" for s in TABLES.values())
                        + ", zoo_pascal_voc, zoo_ade20k, zoo_cityscapes (leaderboards)")
    parser.add_argument("run_dirs", nargs="+", type=Path, help="multirun or job directories")
    parser.add_argument("--format", choices=sorted(FORMATS), default="md")
    parser.add_argument("--output", type=Path, help="write the table here instead of stdout")
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.run_dirs if not d.is_dir()]
    if missing:
        parser.error("not a directory: " + ", ".join(missing))
    try:
        build = make_leaderboard if is_leaderboard(args.table) else make_table
        text = build(args.table, args.run_dirs, args.format)
    except KeyError as error:
        parser.error(str(error.args[0]))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
