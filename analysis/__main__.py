"""Command line of the kit: ``python -m analysis {reproduce,report,data,synthetic}`` (see ``--help``)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m analysis",
        description="Reproduce the cloud-scalability notebooks, fetch their data, regenerate synthetic defaults.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    rep = sub.add_parser(
        "reproduce", help="execute every notebooks/NN_*.ipynb with papermill",
        description="Execute the notebooks (kernel cloud-scalability-kit, working directory notebooks/), "
                    "several at once (--jobs). A canonical run (no -p, not --quick) writes executed copies to "
                    "build/notebooks/, HTML to build/html/, results to build/results/ and publishes the "
                    "figures of every notebook that succeeded to figures/; --quick writes below build/quick/, "
                    "-p runs below build/runs/<parameters>/, failed notebooks to <that folder>/failed/. "
                    "Exit status: 0 all ok, 1 some notebook failed, 2 bad usage, 130 interrupted (Ctrl-C).")
    rep.add_argument("--quick", action="store_true",
                     help="pass quick=True (small sizes) and write every output below build/quick/")
    rep.add_argument("--only", action="append", metavar="PATTERN",
                     help="run only notebooks whose file name contains PATTERN or matches it as a glob "
                          "(repeatable), e.g. --only 05")
    rep.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                     help="set a parameter of the notebooks' parameters cell, converted to its declared "
                          "type (int, float, bool: true/false/1/0, str); repeatable")
    rep.add_argument("--notebooks-dir", default=None, metavar="DIR",
                     help="directory of the notebooks (default: notebooks/)")
    rep.add_argument("--build-dir", default=None, metavar="DIR",
                     help="directory for executed notebooks and HTML (default: build/)")
    rep.add_argument("--no-html", action="store_true", help="skip the HTML rendering")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar or per-notebook lines")
    rep.add_argument("-j", "--jobs", type=_positive_int, default=None, metavar="N",
                     help="notebooks run at once (default: the number of CPU cores)")
    rep.set_defaults(func=_reproduce)

    report = sub.add_parser(
        "report", help="build the static HTML site build/site/ from the last run's executed notebooks",
        description="Build a static site (home page with the synthesis table, one page per notebook, a figure "
                    "gallery) from the executed notebooks in <build-dir>/notebooks/, the results in "
                    "<build-dir>/results/ and the figure index; it loads nothing from the internet. "
                    "Exit status: 0 built, 1 inputs missing (the message says which and how to make them).")
    report.add_argument("--build-dir", default=None, metavar="DIR",
                        help="the run to report on (default: build/, the canonical run; e.g. build/quick)")
    report.add_argument("--figures", default=None, metavar="DIR",
                        help="folder of the figure index (default: <build-dir>/figures when it has an "
                             "index.json, else figures/)")
    report.add_argument("--notebooks-dir", default=None, metavar="DIR",
                        help="source notebooks that must all have executed copies (default: notebooks/)")
    report.add_argument("-o", "--out", default=None, metavar="DIR",
                        help="where to write the site (default: <build-dir>/site)")
    report.set_defaults(func=_report)

    data = sub.add_parser("data", help="download the real datasets into data/external and verify sha256",
                          description="Download and verify the registered real datasets "
                                      "(analysis.datasets.fetch).")
    data.add_argument("--best-effort", action="store_true",
                      help="report but do not fail on unreachable downloads (the notebooks then use the "
                           "embedded synthetic default)")
    data.set_defaults(func=_data)

    syn = sub.add_parser("synthetic", help="regenerate the embedded synthetic default under data/synthetic",
                         description="Regenerate data/synthetic (analysis.workloads.write_synthetic_defaults).")
    syn.set_defaults(func=_synthetic)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: 'error: <what>; see --help' instead of the usage block."""

    def error(self, message: str):
        if message.startswith("argument -p/--param: expected 2 arguments"):
            message = "-p needs a NAME and a VALUE, e.g. -p seed 7"
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def _reproduce(args) -> int:
    from analysis import reproduce

    return reproduce.cli(args)


def _report(args) -> int:
    from analysis import site

    return site.cli(args)


def _print_table(table) -> None:
    if table is None:
        return
    to_string = getattr(table, "to_string", None)
    print(to_string(index=False) if callable(to_string) else table)


def _data(args) -> int:
    from analysis import datasets  # written in parallel: imported only when this command runs

    try:
        table = datasets.fetch(best_effort=args.best_effort)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    _print_table(table)
    return 0


def _synthetic(args) -> int:
    from analysis import workloads  # written in parallel: imported only when this command runs

    try:
        written = workloads.write_synthetic_defaults()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if isinstance(written, (list, tuple)):
        for item in written:
            print(item)
    elif written is not None:
        _print_table(written)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: sys.argv[1:]) and run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
