"""The simulated annotator (ANNOTATOR=oracle): each queried region's dominant ground-truth class
among its pixels no earlier answer labels (docs/method.md section 6), with ORACLE_NOISE's
mistakes, and the review pass's second and third answers, appended to the ledger."""

from __future__ import annotations

import numpy as np

from deeplab.errors import BadInput
from deeplab.experiment import ledger, tasks
from deeplab.experiment.answers import read_selection, round_answers, stage_summary
from deeplab.experiment.job import Job


def oracle_round(exp: Job, t: int, progress: bool = True) -> dict:
    """Answers stage with ANNOTATOR=oracle: the simulated annotator answers the selection (per
    image, on the executor) and the driver appends the answers to the ledger; a resumed run asks
    only the regions the ledger does not answer yet. With ANNOTATOR=human or label_studio people
    answer (`deeplab.annotate.stage.annotate_stage` chooses)."""
    if exp.config.annotator != "oracle":
        raise BadInput(f"job {exp.job_dir} has ANNOTATOR={exp.config.annotator}: its answers come "
                       "from people (scripts/annotate_regions.py serves the page or asks Label "
                       "Studio), not the oracle")
    sel = read_selection(exp, t)
    _oracle_first_answers(exp, t, sel, progress)
    if exp.config.review_share > 0:
        _oracle_reviews(exp, t, sel, progress)
    return stage_summary(exp, t, sel)  # the answers in force (after the review, if any)


def _oracle(exp: Job, t: int, queries: list[dict], progress: bool,
            what: str) -> tuple[list[int], list[int]]:
    """The simulated annotator's (noise-free) answers to `queries` and the regions' sizes,
    in their order."""
    exp.require_labels("the simulated annotator (ANNOTATOR=oracle)")
    by_image: dict[str, list] = {}
    for k, r in enumerate(queries):
        by_image.setdefault(r["image"], []).append(k)
    samples = {s.name: s for s in exp.samples}
    order = {s.name: i for i, s in enumerate(exp.samples)}
    names = sorted(by_image, key=order.__getitem__)
    earlier = exp.answers_by_image(upto_round=t - 1) if t > 0 else {}
    work = [tasks.AnswersTask(exp.descriptor, samples[n], exp.map_path(t, n),
                              [queries[k]["region"] for k in by_image[n]], earlier.get(n, []),
                              {r["round"]: exp.map_path(r["round"], n) for r in earlier.get(n, [])})
            for n in names]
    with exp.executor() as ex:
        results = ex.map(tasks.answers_task, work, f"round {t} {what}", progress)
    out, sizes = [0] * len(queries), [0] * len(queries)
    for name, (answers, size) in zip(names, results):
        for k, a, n in zip(by_image[name], answers, size):
            out[k], sizes[k] = int(a), int(n)
    return out, sizes


def _mistakes(exp: Job, t: int, answers: list[int], positions: list[int], k: int) -> list[int]:
    """ORACLE_NOISE applied to answers of the selection's `positions` (draw k: 0 the first
    answer, 1 the review, 2 the third): one seeded draw per region, so a resumed stage draws
    what an uninterrupted one would."""
    from deeplab.active import review

    c = exp.config
    if not c.oracle_noise:
        return list(answers)
    d = exp.descriptor
    return [int(review.noisy([a], c.oracle_noise, d.num_classes,
                             np.random.default_rng([c.seed, t, p, k]), d.ignore_label)[0])
            for a, p in zip(answers, positions)]


def _oracle_first_answers(exp: Job, t: int, sel: list[dict], progress: bool) -> None:
    done = round_answers(exp, t, sel)
    todo = [k for k, r in enumerate(sel) if (r["image"], r["region"]) not in done]
    if todo:
        queries = [sel[k] for k in todo]
        answers, sizes = _oracle(exp, t, queries, progress, "answers")
        answers = _mistakes(exp, t, answers, todo, 0)
        # in the ledger by image (the data set's order), as the oracle always wrote them
        order = {s.name: i for i, s in enumerate(exp.samples)}
        rows = [ledger.make_row(t, q, a, size=n) for q, a, n in zip(queries, answers, sizes)]
        rows = [rows[k] for k in sorted(range(len(rows)), key=lambda k: (order[rows[k]["image"]], k))]
        exp.ledger.append(rows)


def _oracle_reviews(exp: Job, t: int, sel: list[dict], progress: bool) -> None:
    """The review pass by the simulated annotator: REVIEW_SHARE of the round's answers asked
    again (an independent draw of ORACLE_NOISE), a third answer where the two disagree."""
    from deeplab.active import review

    c = exp.config
    first = round_answers(exp, t, sel)
    picked = review.review_subset(len(sel), c.review_share, c.seed, t).tolist()
    for k in (1, 2):
        have = exp.ledger.reviews(t)
        if k == 1:
            todo = [p for p in picked if 1 not in have.get((sel[p]["image"], sel[p]["region"]), {})]
        else:  # a third answer where the review disagreed
            todo = [p for p in picked if (key := (sel[p]["image"], sel[p]["region"])) in have
                    and 1 in have[key] and 2 not in have[key]
                    and have[key][1]["answer"] != first[key]["answer"]]
        if not todo:
            continue
        queries = [sel[p] for p in todo]
        answers, _ = _oracle(exp, t, queries, progress, "review" if k == 1 else "third answers")
        answers = _mistakes(exp, t, answers, todo, k)
        exp.ledger.append([ledger.make_row(t, q, a, size=first[(q["image"], q["region"])]["size"],
                                           cost=0, review=k, source="oracle",
                                           annotator=f"oracle-{'review' if k == 1 else 'third'}")
                           for q, a in zip(queries, answers)])
