"""Helpers of bash_files/compare.sh: arm settings, the shared warm-up round, the report.

  python scripts/compare.py check --arms "random paper full" --seeds "0 1"
  python scripts/compare.py arm --name paper          # prints REGIONS=..., ACQUISITION=..., ... one per line
  python scripts/compare.py share --source work_dirs/compare/random_s0 --job_dir work_dirs/compare/paper_s0
  python scripts/compare.py report --compare_dir work_dirs/compare --arms "random paper full" --seeds "0 1"
"""

import argparse
import sys


def main(argv=None) -> int:
    from deeplab.experiment import compare

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate ARMS and SEEDS")
    c.add_argument("--arms", required=True, help="ARMS, space-separated")
    c.add_argument("--seeds", required=True, help="SEEDS, space-separated")
    c.add_argument("--budgets", default="", help="BUDGETS (the budget map), space-separated")
    b = sub.add_parser("budget_folder", help="print the folder of one budget's arms")
    b.add_argument("--budget", required=True, help="one budget in the CLICKS_PER_ROUND form (3%% or 1000)")
    a = sub.add_parser("arm", help="print an arm's settings as shell assignments")
    a.add_argument("--name", required=True, help="the arm")
    a.add_argument("--reference_dir", default="", help="the seed's reference job (merge_bound)")
    s = sub.add_parser("share", help="give a job the finished warm-up round of another")
    s.add_argument("--source", required=True, help="the job whose finished warm-up round is copied")
    s.add_argument("--job_dir", required=True, help="the job that receives it")
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
    if args.command == "check":
        compare.check_arms(args.arms.split())
        compare.check_seeds(args.seeds.split())
        compare.check_budgets(args.budgets.split())
    elif args.command == "budget_folder":
        print(compare.budget_folder(args.budget))
    elif args.command == "arm":
        print(compare.arm_settings(args.name, args.reference_dir))
    elif args.command == "share":
        print(compare.share_warm_up(args.source, args.job_dir))
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
