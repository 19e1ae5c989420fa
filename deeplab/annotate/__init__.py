"""People in the loop: session (one round's hand-out, answers, undo and review, independent of
HTTP), server (the annotation page and `annotate_round`, the answers stage with
ANNOTATOR=human), lock (one process serves a round), label_studio (export and import), and the
page itself (page.html).

May import deeplab.experiment, deeplab.active, deeplab.viz, deeplab.datasets and io_utils;
nothing imports it but the scripts."""
