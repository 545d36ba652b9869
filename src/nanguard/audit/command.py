"""``nanguard audit [...] PATH...``: exit 0 (no error found), 1 (an error found), 2 (bad usage
or input it cannot start on, with one line naming the file).

Only argparse at import time: ``nanguard --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ENGINES = ("local", "dask")  # where shards are scanned (see nanguard.audit.engine)


def add_parser(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser(
        "audit",
        help="audit training data (NaN/Inf, outliers, scale, labels, corrupt files)",
        description="Audits .npy, .npz, .csv, .parquet, .tfrecord files and image folders "
        "(one class per subfolder). Several PATHs are audited as one dataset.",
    )
    audit.add_argument(
        "--labels",
        metavar="COLUMN_OR_FILE",
        help="label column (tables, .npz member, TFRecord feature) or a .npy / one-column .csv "
        "file of labels",
    )
    audit.add_argument(
        "--num-classes", type=int, metavar="N", help="the model's classes: labels must be in [0, N)"
    )
    audit.add_argument("--json", metavar="FILE", help="write the JSON report to FILE")
    audit.add_argument("--report", metavar="DIR", help="write report.json and report.html to DIR")
    audit.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local processes (default) or a dask.distributed cluster",
    )
    audit.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler (with --engine dask)")
    audit.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes (default: the CPU count, at most 8)",
    )
    audit.add_argument("--quiet", action="store_true", help="print only the summary line")
    audit.add_argument("paths", nargs="+", metavar="PATH")


def run_audit(args: argparse.Namespace) -> int:
    from nanguard.audit.api import audit_paths
    from nanguard.audit.render import print_report, summary_line
    from nanguard.audit.source import AuditInputError

    try:
        report = audit_paths(
            args.paths,
            labels=args.labels,
            num_classes=args.num_classes,
            engine=args.engine,
            workers=args.workers,
            scheduler=args.scheduler,
        )
    except AuditInputError as exc:
        print(f"nanguard audit: {exc}", file=sys.stderr)
        return 2
    if args.quiet:
        print(summary_line(report))
    else:
        print_report(report)
    if args.json:
        report.save_json(args.json)
    if args.report:
        report.save_json(Path(args.report) / "report.json")
        report.save_html(Path(args.report) / "report.html")
    return report.exit_code
