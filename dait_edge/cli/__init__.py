"""`dait-edge`: a thin command line over the dait_edge library. One module per command; main.py holds the
group that gathers them."""

from dait_edge.cli.main import cli, main

__all__ = ["cli", "main"]
