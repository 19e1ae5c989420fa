"""The budget map's seeds per budget, on made-up job folders. (compare.sh with BUDGETS end to end,
after the default mode in the same work folder: tests/test_compare.py; the map's tables and
crossover on made-up rows: there too.)"""

from deeplab.experiment import budget_map


def test_a_budgets_report_covers_every_seed_its_folder_holds(tmp_path):
    """A seed run later for one budget (SEEDS=2) joins the seeds already there in that
    budget's report: `compare.py budget_seeds` is what compare.sh passes to the report."""
    import subprocess
    import sys
    from pathlib import Path

    folder = tmp_path / "budget_3pct"
    for job in ("random_s0", "paper_s0", "random_s1", "paper_s1", "random_s7"):
        (folder / job).mkdir(parents=True)
        (folder / job / "config.json").write_text("{}")
    (folder / "paper_s9").mkdir()  # no config: not a job
    (folder / "numerics_onednn0" / "random_s0").mkdir(parents=True)
    script = Path(__file__).parents[1] / "scripts" / "compare.py"

    def seeds(*extra):
        out = subprocess.run([sys.executable, str(script), "budget_seeds", "--compare_dir", str(folder),
                              "--arms", "full random paper", *extra], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert seeds() == ["0", "1", "7"]
    assert seeds("--seeds", "2") == ["0", "1", "2", "7"]
    assert budget_map.budget_seeds(folder, ["paper"]) == [0, 1]
