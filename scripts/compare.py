"""The comparison of acquisition methods, and its reports drawn again by hand.

  python scripts/compare.py run        # what bash_files/compare.sh runs: settings from the environment
  python scripts/compare.py report --compare_dir work_dirs/compare --arms "random paper full" --seeds "0 1"
  python scripts/compare.py budget_map --compare_dir work_dirs/budget_map --budgets "1% 3%" --arms "full random paper"
  python scripts/compare.py budget_seeds --compare_dir work_dirs/budget_map/budget_3pct --arms "random paper"
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab.experiment import compare

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    from deeplab.experiment.compare_driver import variables_help

    sub.add_parser("run", help="run the comparison (bash_files/compare.sh): ARMS x SEEDS (x BUDGETS) and "
                   "the reference, then the report; its settings come from the environment",
                   formatter_class=argparse.RawDescriptionHelpFormatter,
                   description="The comparison's own variables (every variable of bash_files/settings.sh "
                               "is a setting too):\n" + variables_help())
    r = sub.add_parser("report", help="write comparison.csv, .png and .md")
    r.add_argument("--compare_dir", required=True, help="the comparison's folder")
    r.add_argument("--arms", required=True, help="ARMS, space-separated")
    r.add_argument("--seeds", required=True, help="SEEDS, space-separated")
    r.add_argument("--title", default="", help="the report's title")
    r.add_argument("--reference_dir", default="", help="where the reference's jobs lie (default: "
                   "--compare_dir)")
    r.add_argument("--onednn", default="1", help="TF_ENABLE_ONEDNN_OPTS of the arms' runs (P5)")
    r.add_argument("--running_since", type=int, default=None,
                   help="epoch second this compare.sh run started (P8 counts it)")
    bs = sub.add_parser("budget_seeds", help="the seeds a budget's report covers: --seeds and "
                        "those of the arms' jobs already in its folder")
    bs.add_argument("--compare_dir", required=True, help="the comparison's folder")
    bs.add_argument("--arms", required=True, help="ARMS, space-separated")
    bs.add_argument("--seeds", default="", help="SEEDS, space-separated")
    m = sub.add_parser("budget_map", help="write budget_map.csv, .md and .png")
    m.add_argument("--compare_dir", required=True, help="the comparison's folder")
    m.add_argument("--budgets", required=True, help="BUDGETS, space-separated")
    m.add_argument("--arms", required=True, help="ARMS, space-separated")
    m.add_argument("--running_since", type=int, default=None,
                   help="the running driver's start (seconds since the epoch), for the wall time")
    args = p.parse_args(argv)
    if args.command == "run":
        from deeplab.experiment import compare_driver

        return compare_driver.main()
    elif args.command == "budget_seeds":
        from pathlib import Path

        from deeplab.experiment import budget_map

        found = budget_map.budget_seeds(Path(args.compare_dir), args.arms.split())
        given = compare.check_seeds(args.seeds.split()) if args.seeds.split() else []
        print(" ".join(map(str, sorted(set(found) | set(given)))))
    elif args.command == "budget_map":
        from deeplab.experiment import budget_map

        print(budget_map.write_budget_map(args.compare_dir, args.budgets.split(),
                                          compare.check_arms(args.arms.split()),
                                          args.running_since))
        for name in ("budget_map.csv", "budget_map.png", "budget_map.md"):
            print(f"{args.compare_dir}/{name}")
    else:
        md = compare.write_report(args.compare_dir, compare.check_arms(args.arms.split()),
                                  compare.check_seeds(args.seeds.split()), args.title,
                                  args.onednn, args.running_since, args.reference_dir or None)
        print(md)
        for name in ("comparison.csv", "comparison.png", "comparison.md"):
            print(f"{args.compare_dir}/{name}")
    return 0


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
