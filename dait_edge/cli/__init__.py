"""`dait-edge`: a thin command line over the dait_edge library. One module per command; app.py holds the
group that gathers them."""

from dait_edge.cli.app import cli, main

__all__ = ["cli", "main"]
