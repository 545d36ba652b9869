"""The ``nanguard`` command line (CONTRACT.md §1).

Imports TensorFlow only for the commands that train, so ``nanguard --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from nanguard.contract import POLICIES, package_version


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanguard",
        description="Find out, at the step it happens, why your Keras training loss went NaN.",
    )
    parser.add_argument("--version", action="version", version=f"nanguard {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a training script, guarding every fit and hand-written loop",
        description="Runs SCRIPT ARGS... exactly as `python SCRIPT ARGS...` would, guarded.",
    )
    run.add_argument(
        "--policy", choices=POLICIES, default="stop", help="what to do on a NaN (default: stop)"
    )
    run.add_argument("--report", metavar="DIR", help="write report.json and report.html to DIR")
    run.add_argument("--json", metavar="FILE", help="write the JSON report to FILE")
    run.add_argument(
        "--quiet", action="store_true", help="print nothing but what the script prints"
    )
    run.add_argument("script", metavar="SCRIPT")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    demo = commands.add_parser(
        "demo",
        help="run the built-in scenarios (why does my loss go NaN?) under the guard",
        description="Trains small models on synthetic data that reproduce the classic NaN causes.",
    )
    demo.add_argument("--json", metavar="FILE", help="write the JSON report to FILE")
    demo.add_argument("--report", metavar="DIR", help="write report.json and report.html to DIR")
    demo.add_argument(
        "--only", metavar="NAME", action="append", help="run only this scenario (repeatable)"
    )
    demo.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from nanguard.runscript import UsageError

    try:
        if args.command == "run":
            if args.policy == "heal":
                raise UsageError(
                    "nanguard run: --policy heal is not available in this version; use stop or skip"
                )
            from nanguard.runscript import run_script

            return run_script(
                args.script,
                args.args,
                policy=args.policy,
                json_path=args.json,
                report_dir=args.report,
                quiet=args.quiet,
            )
        if args.command == "demo":
            from nanguard.demo import run_demo

            return run_demo(
                only=args.only, list_only=args.list, json_path=args.json, report_dir=args.report
            )
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
