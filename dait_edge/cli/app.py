"""The `dait-edge` command group: its help, its version, and one command per module of this package."""

from __future__ import annotations

import sys

import click

from dait_edge import __version__
from dait_edge.cli.base import UserErrorGroup


@click.group(
    cls=UserErrorGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="dait-edge")
def cli() -> None:
    """Distil a frozen vision-language model into a small fine-grained classifier and ship it.

    \b
    The flow:  data inspect -> zero-shot -> distill -> export -> profile -> report
    Compare methods (KD, RKD, VL2Lite, RISE, BorLan, DHO, DAIT):  distill --method NAME, then compare
    Pay the VLM once:  distill --vlm-views auto (the default), then `cache list`
    All four students at once:  sweep
    Start with `dait-edge demo` (offline, synthetic data), or `dait-edge list students`.
    """


def _register_commands() -> None:
    # Imported here so `dait-edge --help` stays fast: heavy imports live inside each command.
    from dait_edge.cli import (
        cache_cmd,
        compare_cmd,
        data_cmd,
        demo_cmd,
        distill_cmd,
        export_cmd,
        list_cmd,
        profile_cmd,
        report_cmd,
        sweep_cmd,
        zero_shot_cmd,
    )

    for module in (
        list_cmd,
        data_cmd,
        zero_shot_cmd,
        distill_cmd,
        export_cmd,
        profile_cmd,
        report_cmd,
        compare_cmd,
        sweep_cmd,
        cache_cmd,
        demo_cmd,
    ):
        cli.add_command(module.command)


_register_commands()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="dait-edge")
