"""What propagation and confident pixels would add to one round of a job, at several settings,
before a job is run with them: per setting, the training labels each mechanism gives (after the
job's sieving) and the share of them that is wrong against the ground truth. It reads the
round's map and answers and runs the previous round's model; it writes nothing.

  python scripts/implied_labels.py --job_dir work_dirs/compare/paper_s0 --round 1 \\
      --eps 0.05 0.1 0.2 --hops 1 2 --share 0.1 0.2 0.5

Use it on train (the pool's ground truth) to choose PROPAGATE_EPS, PROPAGATE_HOPS and
SELF_TRAIN_SHARE (docs/method.md sections 12-13); the job's own settings are not changed.
"""

import argparse
import sys


def measure(job_dir: str, t: int, eps_list, hops_list, shares, progress: bool = True) -> list[dict]:
    import itertools

    import numpy as np
    from tqdm import tqdm

    from deeplab.active import labels as L
    from deeplab.active import metrics, propagation, self_training
    from deeplab.errors import BadInput
    from deeplab.experiment import region_maps
    from deeplab.experiment.job import Job
    from deeplab.experiment.stages import predictor_for_round
    from deeplab.parallel import prefetch

    exp = Job.open(job_dir)
    if t < 1:
        raise BadInput("round 0 has no model before it: give --round 1 or later")
    exp.require(t, "annotate")
    exp.require(t - 1, "train")
    d, c = exp.descriptor, exp.config
    exp.require_labels("measuring how many implied labels are wrong")
    for eps, hops in itertools.product(eps_list, hops_list):
        propagation.check_settings(eps, hops)
    for share in shares:
        self_training.check_share(share)
    rows_by_image = exp.answers_by_image(upto_round=t)
    predictor = predictor_for_round(exp, t - 1)
    settings = list(itertools.product(eps_list, hops_list))
    prop = {s: [0, 0, 0] for s in settings}  # px, wrong, regions
    hist = 0
    answered = [0, 0]

    def stream():
        images = prefetch(lambda s: (s.name, d.read_image(s)), exp.samples)
        return zip(exp.samples, (p for _, p in predictor.stream(images)))

    for s, probs in tqdm(stream(), total=len(exp.samples), desc=f"round {t} propagation", unit="img",
                         disable=not progress):
        hist = hist + self_training.confidence_histogram(probs)
        answers = L.answer_luts(rows_by_image.get(s.name, []))
        if t not in answers:
            continue
        maps = {r: region_maps.load(exp.map_path(r, s.name)) for r in answers}
        gt = d.read_label(s)
        sieve = probs if c.sieve else None
        base = L.training_labels(maps, answers, sieve, curve_points=c.curve_points, min_size_px=exp.min_size_px(),
                                 ignore_label=d.ignore_label)
        answered[0] += int((base.labels != d.ignore_label).sum())
        answered[1] += int(metrics.label_errors(base.labels, gt, d.ignore_label)[0])
        graph = propagation.region_graph(maps[t], probs)  # once per image, for every setting
        for eps, hops in settings:
            ids, cls = propagation.propagate_on(graph, *answers[t], eps=eps, hops=hops,
                                                ignore_label=d.ignore_label)
            if not len(ids):
                continue
            res = L.training_labels(maps, answers, sieve, curve_points=c.curve_points, min_size_px=exp.min_size_px(),
                                    ignore_label=d.ignore_label, propagated={t: (ids, cls)})
            px = np.where(res.source == L.SOURCE_PROPAGATED, res.labels, d.ignore_label)
            prop[eps, hops][0] += int((px != d.ignore_label).sum())
            prop[eps, hops][1] += int(metrics.label_errors(px, gt, d.ignore_label)[0])
            prop[eps, hops][2] += len(ids)
    out = [{"mechanism": "answers (the round's labels)", "setting": f"sieve={int(c.sieve)}",
            "px": answered[0], "wrong_share": answered[1] / max(answered[0], 1), "regions": ""}]
    out += [{"mechanism": "propagation", "setting": f"eps={eps:g} hops={hops}", "px": v[0],
             "wrong_share": v[1] / max(v[0], 1), "regions": v[2]} for (eps, hops), v in prop.items()]
    if shares:
        thresholds = {share: self_training.class_thresholds(hist, share) for share in shares}
        st = {share: [0, 0] for share in shares}
        for s, probs in tqdm(stream(), total=len(exp.samples), desc=f"round {t} confident pixels",
                             unit="img", disable=not progress):
            answers = L.answer_luts(rows_by_image.get(s.name, []))
            maps = {r: region_maps.load(exp.map_path(r, s.name)) for r in answers}
            gt = d.read_label(s)
            for share in shares:
                conf = self_training.confident_labels(probs, thresholds[share], d.ignore_label)
                res = L.training_labels(maps, answers, None, ignore_label=d.ignore_label, confident=conf)
                px = np.where(res.source == L.SOURCE_SELF_TRAINED, res.labels, d.ignore_label)
                st[share][0] += int((px != d.ignore_label).sum())
                st[share][1] += int(metrics.label_errors(px, gt, d.ignore_label)[0])
        out += [{"mechanism": "confident pixels", "setting": f"share={share:g}", "px": v[0],
                 "wrong_share": v[1] / max(v[0], 1), "regions": ""} for share, v in st.items()]
    return out


def format_rows(rows: list[dict]) -> str:
    table = [["mechanism", "setting", "labels (px)", "wrong", "regions"]]
    table += [[r["mechanism"], r["setting"], f"{r['px']:,}", f"{100 * r['wrong_share']:.1f} %",
               str(r["regions"])] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    return "\n".join("  ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in
                               enumerate(zip(line, widths))) for line in table)


def main(argv=None) -> int:
    from deeplab import cli

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job_dir", required=True, help="the job folder")
    p.add_argument("--round", type=int, default=1, help="the round whose answers are measured (>= 1)")
    p.add_argument("--eps", type=float, nargs="*", default=[0.05, 0.1, 0.2],
                   help="PROPAGATE_EPS values to measure")
    p.add_argument("--hops", type=int, nargs="*", default=[1, 2], help="PROPAGATE_HOPS values to measure")
    p.add_argument("--share", type=float, nargs="*", default=[0.1, 0.2, 0.5],
                   help="SELF_TRAIN_SHARE values to measure (none: skip confident pixels)")
    args = p.parse_args(argv)

    def run():
        rows = measure(args.job_dir, args.round, args.eps, args.hops, args.share)
        print(f"round {args.round} of {args.job_dir}: training labels each mechanism would add "
              "(after the job's sieving), wrong = not their ground truth")
        print(format_rows(rows))
        return 0

    return cli.guarded(run, what="implied labels")


if __name__ == "__main__":
    sys.exit(main())
