"""The click group class every command group uses: a UserError becomes one line and exit code 2."""

from __future__ import annotations

import click

from dait_edge.errors import UserError


class UserErrorGroup(click.Group):
    """Turns a UserError raised anywhere below into `error: ...` on stderr and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except UserError as err:
            click.echo(f"error: {err}", err=True)
            ctx.exit(UserError.exit_code)
