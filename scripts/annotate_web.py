"""The annotation page of a round (ANNOTATOR=human): people answer the queried regions in a
browser; the answers stage completes when every region is answered. The drivers start it
themselves (through scripts/annotate_regions.py); run it by hand to serve a round again or on
another address:

  python scripts/annotate_web.py --job_dir work_dirs/mine --round 1
  python scripts/annotate_web.py --job_dir work_dirs/mine --round 1 --host 0.0.0.0 --port 8765

The page binds 127.0.0.1 unless --host says otherwise; then a token is required on every request
(printed with the URL at start; --token or ANNOTATE_TOKEN fixes it). Answers are saved as they are
given: stop it at any time and run it again to continue.
"""

import argparse
import os
import sys

from deeplab import cli


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_round_flags(p)
    p.add_argument("--host", default=None, help="address to bind (default: the job's ANNOTATE_HOST, "
                                                "127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="default: the job's ANNOTATE_PORT; 0: any")
    p.add_argument("--token", default=os.environ.get("ANNOTATE_TOKEN"),
                   help="required on every request when --host is not the loopback (default: random)")
    p.add_argument("--preselect", type=cli.parse_bool, default=None,
                   help="pre-select the model's dominant class (default: the job's PRESELECT)")
    p.add_argument("--lease_secs", type=float, default=None,
                   help="how long a region handed to one person is held for them")
    args = p.parse_args(argv)

    def serve(exp, t):
        from deeplab.annotate import server

        return server.serve_round(exp, t, args.host, args.port, args.token, args.preselect,
                               args.lease_secs)

    try:
        return cli.run_stage(args.job_dir, args.round, "annotate", serve)
    except KeyboardInterrupt:
        print("\nstopped: every answer given so far is saved; run the same command to continue",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    from deeplab.cli import guarded

    sys.exit(guarded(main))
