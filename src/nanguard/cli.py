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
    run.add_argument(
        "--bundles",
        metavar="DIR",
        help="write a repro bundle per incident to DIR (by default REPORT_DIR/bundles when "
        "--report is given); replay one with `nanguard replay DIR/step-N`",
    )
    run.add_argument("script", metavar="SCRIPT")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    replay = commands.add_parser(
        "replay",
        help="reproduce and re-diagnose an incident from its repro bundle",
        description="Loads a repro bundle written by `nanguard run --report DIR` (in "
        "DIR/bundles/step-N) or Guard(bundle_dir=...), diagnoses the incident again and "
        "recomputes the step. Exit code 0 when the step is non-finite again, 1 when it is "
        "not (finite, or it cannot be recomputed), 2 on bad usage or an unreadable bundle. "
        "The bundle's custom_objects.py is imported: replay only bundles you trust.",
    )
    replay.add_argument("bundle", metavar="BUNDLE")
    replay.add_argument(
        "--custom-objects",
        metavar="FILE.py",
        help="a Python file defining the model's custom layers, losses ... "
        "(default: the bundle's custom_objects.py)",
    )
    replay.add_argument("--json", metavar="FILE", help="write the replay's result to FILE")

    from nanguard.audit.command import add_parser as add_audit_parser

    add_audit_parser(commands)

    report = commands.add_parser(
        "report",
        help="show a saved run report again (terminal, and HTML with --html)",
        description="Re-renders a run report written by --json or --report; the plots use "
        "series.json beside it when present.",
    )
    report.add_argument("report_json", metavar="RUN.json")
    report.add_argument("--html", metavar="OUT", help="also write the HTML page to OUT")

    lint = commands.add_parser(
        "lint",
        help="check a training script's model, compile settings and data without training",
        description="Runs SCRIPT ARGS... up to its first fit (or first optimizer step of a "
        "hand-written loop), checks that model and its first batch (output activation against "
        "loss, from_logits, learning rate, initializer scale, dtype policy, non-finite values, "
        "input scale, labels against output units), prints the findings and stops the script "
        "without training. Exit code 0 when nothing of severity warning or critical is found, "
        "1 when something is, 2 on bad usage.",
    )
    lint.add_argument("script", metavar="SCRIPT")
    lint.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    lr_find = commands.add_parser(
        "lr-find",
        help="find the largest stable learning rate for a training script's model and data",
        description="Runs SCRIPT ARGS... up to its first fit, then a learning-rate range test "
        "on that model and data (the rate grows exponentially over --steps steps; the weights "
        "are restored after) and prints the largest stable rate and a suggestion. The script "
        "does not train. Exit code 0 with a suggestion, 1 when no rate was stable, 2 on bad "
        "usage.",
    )
    lr_find.add_argument("--plot", metavar="FILE", help="write the loss curve to FILE (SVG)")
    lr_find.add_argument("--steps", type=int, default=100, help="steps of the test (default 100)")
    lr_find.add_argument("--start", type=float, default=1e-7, help="first rate (default 1e-7)")
    lr_find.add_argument("--stop", type=float, default=10.0, help="last rate (default 10)")
    lr_find.add_argument("script", metavar="SCRIPT")
    lr_find.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

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
            from nanguard.runscript import run_script

            return run_script(
                args.script,
                args.args,
                policy=args.policy,
                json_path=args.json,
                report_dir=args.report,
                quiet=args.quiet,
                bundle_dir=args.bundles,
            )
        if args.command == "replay":
            from nanguard.diagnose.reproduce import replay_command

            return replay_command(
                args.bundle, custom_objects=args.custom_objects, json_path=args.json
            )
        if args.command == "audit":
            from nanguard.audit.command import run_audit

            return run_audit(args)
        if args.command == "report":
            from nanguard.render.saved import ReportError, show_report

            try:
                return show_report(args.report_json, html=args.html)
            except ReportError as exc:
                raise UsageError(f"nanguard report: {exc}") from None
        if args.command == "lint":
            from nanguard.monitor.lint import lint_script

            return lint_script(args.script, args.args)
        if args.command == "lr-find":
            from nanguard.monitor.lr_find import lr_find_script

            return lr_find_script(
                args.script,
                args.args,
                plot=args.plot,
                steps=args.steps,
                start=args.start,
                stop=args.stop,
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
