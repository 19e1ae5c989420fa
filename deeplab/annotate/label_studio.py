"""Exchange with Label Studio: a round's queries as Label Studio tasks, and a completed Label
Studio export back into the job's ledger.

Export (`export_round`): one task per queried region. `data.image` is the image's URL for Label
Studio (by default its local-files URL, `/data/local-files/?d=<path below DATA_DIR>`), the
`al_*` fields say which query it is, and the region itself is a pre-annotation (`predictions`):
a `BrushLabels` mask in Label Studio's brush RLE. From round 1 on, read-only masks show what is
labelled already, as the page shows it: `answered`, the region's pixels an earlier answer labels
(the question is the class of the rest, the part the click will label), and `propagated` and
`confident`, those the last round labelled without a click (an earlier answer propagated there,
or the model's confident pixels; an answer replaces both). `label_config.xml` beside the tasks is
the labeling interface: the image, the brush layer of those masks, and one single choice among
the classes and "unclear".

Import (`import_round`): a Label Studio JSON export of those tasks. Every answer must belong to a
queried region of that round, name a known class (or "unclear", answer 255), appear once and not
be in the ledger yet; anything else is refused with the task id and the reason, and then nothing
is written. Tasks nobody answered are left for later (another import, or the web page).

The brush RLE (Label Studio's `thi.ng/rle-pack` layout): a bit stream of a 32-bit value count, a
5-bit word size - 1, four 4-bit run-length field sizes - 1, then runs: a flag bit (1: one value
repeated, 0: literal values), a 2-bit index into the field sizes, the run length - 1 in that many
bits, and the value(s) in word-size bits. The values are the RGBA bytes of the mask image.
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

from deeplab import io_utils
from deeplab.active import labels as L
from deeplab.experiment.locks import round_lock
from deeplab.errors import BadInput
from deeplab.experiment import ledger, region_maps
from deeplab.experiment.answers import labelled_before, read_selection, round_answers
from deeplab.experiment.job import Job

UNCLEAR = "unclear"
FROM_BRUSH, FROM_CLASS, TO_IMAGE, QUERY_LABEL = "region", "class", "image", "query"
# The brush layer's read-only masks: pixels an earlier answer labels, and labels an answer
# replaces ((labels.SOURCE_* code, label, colour))
ANSWERED_LABEL, ANSWERED_COLOUR = "answered", "#9e9e9e"
IMPLIED_MASKS = ((L.SOURCE_PROPAGATED, "propagated", "#00b4ff"), (L.SOURCE_SELF_TRAINED, "confident", "#5a5a5a"))
QUESTION = f"Which class covers most of the region (outside '{ANSWERED_LABEL}')?"
RLE_SIZES = (3, 4, 8, 16)
WORD_BITS = 8
LOCAL_FILES_PREFIX = "/data/local-files/?d="


# ---------------------------------------------------------------------------- brush RLE
def mask_to_rle(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of a bool/0-1 [H, W] mask (the mask in all four RGBA channels, as
    Label Studio's converter writes it)."""
    values = np.repeat(np.asarray(mask).astype(bool).ravel().astype(np.uint8) * 255, 4)
    n = len(values)
    bits = [f"{n:032b}", f"{WORD_BITS - 1:05b}"] + [f"{s - 1:04b}" for s in RLE_SIZES]
    if n:
        change = np.flatnonzero(values[1:] != values[:-1]) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [n]]))
        for length, value in zip(lengths.tolist(), values[starts].tolist()):
            word = f"{value:08b}"
            if length == 1:
                bits.append("0" + "00" + "000" + word)
            elif length <= 8:
                bits.append("1" + "00" + f"{length - 1:03b}" + word)
            elif length <= 16:
                bits.append("1" + "01" + f"{length - 1:04b}" + word)
            elif length <= 256:
                bits.append("1" + "10" + f"{length - 1:08b}" + word)
            else:
                while length > 2 ** 16:
                    bits.append("1" + "11" + f"{2 ** 16 - 1:016b}" + word)
                    length -= 2 ** 16
                bits.append("1" + "11" + f"{length - 1:016b}" + word)
    stream = "".join(bits)
    stream += "0" * (8 - len(stream) % 8)  # Label Studio pads with 1..8 zero bits
    return [int(stream[i:i + 8], 2) for i in range(0, len(stream), 8)]


def rle_to_mask(rle, height: int, width: int) -> np.ndarray:
    """bool [H, W]: the alpha channel of a Label Studio brush RLE, non-zero."""
    data = np.asarray(rle, np.int64)
    if data.ndim != 1 or len(data) < 7 or data.min() < 0 or data.max() > 255:
        raise BadInput("not a brush RLE (a list of bytes)")
    bits = np.unpackbits(data.astype(np.uint8))
    pos = 0

    def read(k):
        nonlocal pos
        if pos + k > len(bits):
            raise BadInput("the brush RLE ends early")
        v = 0
        for b in bits[pos:pos + k]:
            v = (v << 1) | int(b)
        pos += k
        return v

    n = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    if n != height * width * 4:
        raise BadInput(f"the brush RLE holds {n} values, not {height}x{width}x4")
    out = np.zeros(n, np.uint8)
    i = 0
    while i < n:
        repeat = read(1)
        j = min(n, i + 1 + read(sizes[read(2)]))
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out.reshape(height, width, 4)[:, :, 3] > 0


# ---------------------------------------------------------------------------- export
def label_config(exp: Job) -> str:
    """The Label Studio labeling interface of this data set's classes."""
    d = exp.descriptor
    if UNCLEAR in d.class_names:
        raise BadInput(f"a class is named '{UNCLEAR}', the answer that labels nothing; rename it")
    choices = "\n".join(f"    <Choice value={quoteattr(n)} background={quoteattr(colour)}/>"
                        for n, colour in zip(d.class_names, d.hex_colours()))
    masks = [(ANSWERED_LABEL, ANSWERED_COLOUR)] + [(label, colour) for _, label, colour in IMPLIED_MASKS]
    read_only = "".join(f'    <Label value="{label}" background="{colour}"/>\n' for label, colour in masks)
    return (f'<View>\n  <Header value="{QUESTION}"/>\n'
            f'  <Image name="{TO_IMAGE}" value="$image" zoom="true" zoomControl="true"/>\n'
            f'  <BrushLabels name="{FROM_BRUSH}" toName="{TO_IMAGE}">\n'
            f'    <Label value="{QUERY_LABEL}" background="#ffe600"/>\n{read_only}  </BrushLabels>\n'
            f'  <Choices name="{FROM_CLASS}" toName="{TO_IMAGE}" choice="single" required="true" '
            f'showInline="true">\n{choices}\n    <Choice value="{UNCLEAR}"/>\n  </Choices>\n</View>\n')


def export_round(exp: Job, t: int, out: Path | str, image_url_prefix: str = LOCAL_FILES_PREFIX,
                 document_root: Path | str | None = None, only_unanswered: bool = True) -> dict:
    """Writes round t's queries as Label Studio tasks (`out`, JSON) and the labeling config
    (`label_config.xml` beside it). Image URLs: `image_url_prefix` + the image's path below
    `document_root` (default: the data root). Returns counts."""
    out = Path(out)
    sel = read_selection(exp, t)
    answered = round_answers(exp, t, sel) if only_unanswered else {}
    root = Path(document_root or exp.data_root).resolve()
    samples = {s.name: s for s in exp.samples}
    # The selection is ordered by score, so images interleave: each map is loaded once, for all
    # of its image's queries, and the tasks keep the selection's order.
    by_image: dict[str, list[int]] = {}
    for i, q in enumerate(sel):
        if (q["image"], q["region"]) not in answered:
            by_image.setdefault(q["image"], []).append(i)
    tasks = {}
    before = labelled_before(exp, t)
    for name, queries in by_image.items():
        url = image_url(samples[name], root, image_url_prefix)
        regions = region_maps.load(exp.map_path(t, name))
        h, w = regions.shape
        for i in queries:
            tasks[i] = region_task(exp, t, i, sel[i], url, regions == sel[i]["region"], h, w,
                                   *before(name, regions.shape))
    tasks = [tasks[i] for i in sorted(tasks)]
    io_utils.write_text(out, json.dumps(tasks) + "\n")
    io_utils.write_text(out.with_name("label_config.xml"), label_config(exp))
    return {"tasks": len(tasks), "answered_before": len(answered), "file": str(out),
            "label_config": str(out.with_name("label_config.xml"))}


def image_url(sample, root: Path, prefix: str = LOCAL_FILES_PREFIX) -> str:
    """The image's URL for Label Studio: `prefix` + its path below the document root `root`,
    percent-encoded (names with '&', '#', '+', '%', '?' or spaces survive the URL)."""
    try:
        rel = sample.image_path.resolve().relative_to(root).as_posix()
    except ValueError:
        raise BadInput(f"image {sample.image_path} is not below the document root {root}: give "
                       "Label Studio's LOCAL_FILES_DOCUMENT_ROOT (--document_root, or "
                       "LABEL_STUDIO_ROOT with ANNOTATOR=label_studio)") from None
    return prefix + urllib.parse.quote(rel, safe="/")


def answer_codes(descriptor) -> dict[str, int]:
    """What an answer's name records in the ledger: each class its id, "unclear" the ignore label."""
    return {**{n: c for c, n in enumerate(descriptor.class_names)}, UNCLEAR: descriptor.ignore_label}


def not_a_class(name) -> str:
    return f"'{name}' is not a class of this data set (nor '{UNCLEAR}')"


def region_task(exp: Job, t: int, i: int, q: dict, url: str, mask: np.ndarray, h: int, w: int,
                labelled: np.ndarray | None = None, implied: np.ndarray | None = None) -> dict:
    """One Label Studio task: query i's image and its region as a brush pre-annotation, with the
    region's pixels that earlier answers label (`labelled`) and those that the last round's label
    sources `implied` (labels.SOURCE_*) label without a click as read-only masks (both as
    answers.labelled_before gives them, of the map's size)."""
    answered = mask & labelled if labelled is not None else np.zeros_like(mask)
    task = {
        "data": {"image": url, "al_job": exp.job_dir.name, "al_round": t, "al_query": i,
                 "al_image": q["image"], "al_region": q["region"]},
        "predictions": [{
            "model_version": f"round {t} query",
            "result": [{"id": f"q{i}", "type": "brushlabels", "from_name": FROM_BRUSH,
                        "to_name": TO_IMAGE, "original_width": w, "original_height": h,
                        "image_rotation": 0,
                        "value": {"format": "rle", "rle": mask_to_rle(mask),
                                  "brushlabels": [QUERY_LABEL]}}]}],
    }
    parts = [(ANSWERED_LABEL, answered)] + [(label, mask & ~answered & (implied == code))
                                            for code, label, _ in (IMPLIED_MASKS if implied is not None else ())]
    for label, part in parts:
        if part.any():
            task["predictions"][0]["result"].append({
                "id": f"{label}{i}", "type": "brushlabels", "from_name": FROM_BRUSH, "to_name": TO_IMAGE,
                "original_width": w, "original_height": h, "image_rotation": 0, "readonly": True,
                "value": {"format": "rle", "rle": mask_to_rle(part), "brushlabels": [label]}})
    return task


# ---------------------------------------------------------------------------- import
class ImportRefused(BadInput):
    """A Label Studio export that cannot go into the ledger; lists every refused task."""


def _choice(task: dict) -> tuple[str | None, str | None, str]:
    """(class name, annotator, '') of a task's answer, (None, None, '') if unanswered, or
    (None, None, reason)."""
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not anns:
        return None, None, ""
    if len(anns) > 1:
        return None, None, f"has {len(anns)} annotations; keep one per task"
    return annotation_choice(anns[0])


def annotator_id(who) -> str:
    """The ledger's annotator of a Label Studio `completed_by` (an id, or a user as a dict)."""
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in str(who or "ls"))[:64]


def annotation_choice(ann: dict) -> tuple[str | None, str | None, str]:
    """(class name, annotator, '') of one submitted annotation, or (None, None, reason)."""
    picks = [r for r in ann.get("result") or []
             if r.get("type") == "choices" and r.get("from_name") == FROM_CLASS]
    if len(picks) != 1:
        return None, None, f"its annotation has {len(picks)} '{FROM_CLASS}' choices, not one"
    values = (picks[0].get("value") or {}).get("choices") or []
    if len(values) != 1 or not isinstance(values[0], str):
        return None, None, f"its '{FROM_CLASS}' choice holds {values!r}, not one class"
    return values[0], annotator_id(ann.get("completed_by")), ""


def _lead_time_ms(task: dict) -> tuple[int | None, str]:
    """The lead time of the task's one annotation (`annotation_lead_ms`); (None, '') without."""
    anns = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if len(anns) != 1:
        return None, ""
    return annotation_lead_ms(anns[0])


def annotation_lead_ms(ann: dict) -> tuple[int | None, str]:
    """(ms, '') from Label Studio's `lead_time` of an annotation (seconds the person spent on
    it); (None, '') when absent; (None, reason) when it is there but not a number of seconds in
    0..24 h (a negative, a string, NaN): the answer is not imported with a time it lacks."""
    lead = ann.get("lead_time")
    if lead is None:
        return None, ""
    if isinstance(lead, bool) or not isinstance(lead, (int, float)) or not 0 <= lead <= 24 * 3600:
        return None, (f"its lead_time {str(lead)[:20]!r} is not a number of seconds in 0..86400; "
                      "correct or remove it")
    return int(round(lead * 1000)), ""


def import_round(exp: Job, t: int, export: Path | str) -> dict:
    """Validates a Label Studio JSON export of round t's tasks and appends its answers to the
    ledger (all or nothing). Returns counts; raises ImportRefused naming each bad task."""
    export = Path(export)
    try:
        tasks = json.loads(export.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImportRefused(f"{export} is not a readable JSON file ({e})") from None
    if not isinstance(tasks, list):
        raise ImportRefused(f"{export} is not a Label Studio JSON export (a list of tasks); export "
                            "the project as JSON, not JSON-MIN or CSV")
    with round_lock(exp, t):  # not while the round's page is taking answers
        return _import(exp, t, export, tasks)


def _task_key(task, k: int, t: int, asked: dict) -> tuple[object, tuple | None, str]:
    """(task id, (image, region) it asks, '') of an exported task of round t, or (id, None,
    the reason it is refused)."""
    tid = task.get("id", f"#{k}") if isinstance(task, dict) else f"#{k}"
    data = task.get("data") if isinstance(task, dict) else None
    if not isinstance(data, dict) and isinstance(task, dict) and "al_image" in task:
        return tid, None, ("its fields are not under 'data': this is a JSON-MIN export; export "
                           "the project as JSON (Export > JSON) and import that")
    if not isinstance(data, dict) or "al_image" not in data or "al_region" not in data:
        return tid, None, "not a task exported by this project (no al_image/al_region)"
    bad = [f"{f} is {str(data.get(f))[:30]!r}" for f in ("al_round", "al_region", "al_query")
           if f in data and (isinstance(data[f], bool) or not isinstance(data[f], int))]
    if not isinstance(data["al_image"], str):
        bad.append(f"al_image is {str(data['al_image'])[:30]!r}")
    if bad:
        return tid, None, (f"{', '.join(bad)}: the round, region and query are integers and the "
                           "image a name, as exported; re-export the round")
    if data.get("al_round") != t:
        return tid, None, f"belongs to round {data.get('al_round')!r}, not round {t}"
    key = (data["al_image"], data["al_region"])
    if key not in asked:
        return tid, None, f"region {key[1]!r} of {key[0]!r} was not queried in round {t}"
    return tid, key, ""


def _import(exp: Job, t: int, export: Path, tasks: list) -> dict:
    sel = read_selection(exp, t)
    asked = {(q["image"], q["region"]): q for q in sel}
    answered = round_answers(exp, t, sel)
    names = answer_codes(exp.descriptor)
    errors, rows, seen, unanswered = [], [], {}, 0
    for k, task in enumerate(tasks):
        tid, key, reason = _task_key(task, k, t, asked)
        name, who = None, None
        if not reason:
            name, who, reason = _choice(task)
        if not reason and name is None:
            unanswered += 1
            continue
        if not reason and name not in names:
            reason = not_a_class(name)
        elif not reason and key in seen:
            reason = f"region {key[1]} of '{key[0]}' is answered again (first in task {seen[key]})"
        elif not reason and key in answered:
            reason = f"region {key[1]} of '{key[0]}' is answered in the ledger already"
        elapsed = None
        if not reason:
            elapsed, reason = _lead_time_ms(task)
        if reason:
            errors.append(f"task {tid}: {reason}")
            continue
        seen[key] = tid
        rows.append(ledger.make_row(t, asked[key], names[name], annotator=who,
                                    source="label_studio", elapsed_ms=elapsed))
    if errors:
        shown = "\n  ".join(errors[:20]) + (f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else "")
        raise ImportRefused(f"{export}: {len(errors)} tasks refused, nothing was imported:\n  {shown}")
    exp.ledger.append(rows)
    return {"imported": len(rows), "unanswered_tasks": unanswered,
            "answered": len(answered) + len(rows), "asked": len(sel)}
