"""People in the loop: session (one round's hand-out, answers, undo and review, independent of
HTTP), stage (the answers stage: ANNOTATOR chooses the oracle, the page or Label Studio),
server (the annotation page, ANNOTATOR=human), ls_loop (Label Studio in the loop), label_studio
(export and import), and the page itself (page.html).

May import deeplab.experiment, deeplab.active, deeplab.viz, deeplab.datasets and io_utils;
nothing imports it but the scripts."""
