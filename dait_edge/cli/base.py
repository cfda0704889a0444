"""The click group class every command group uses: a UserError becomes one line and exit code 2."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import click

from dait_edge.errors import Interrupted, UserError

# Packages of the `full` extra: a light (device) install lacks them, and only some commands need them.
FULL_INSTALL_MODULES = {
    "torch",
    "torchvision",
    "timm",
    "open_clip",
    "onnx",
    "onnxscript",
    "onnxconverter_common",
    "safetensors",
    "scipy",
    "matplotlib",
    "tqdm",
}


def missing_full_install(err: ModuleNotFoundError, command: str | None) -> UserError | None:
    """A light install running a workstation command: say which package and how to get it."""
    top = (err.name or "").split(".")[0]
    if top not in FULL_INSTALL_MODULES:
        return None
    what = f"`dait-edge {command}`" if command else "this command"
    return UserError(
        f"{what} needs {top}, which this light install lacks (it only profiles ONNX artifacts);"
        " install the full toolchain with: pip install 'dait-edge[full]'"
    )


def flags_for(err: UserError, command: click.Command | None) -> list[str]:
    """The command's flags that set the settings `err` names (`data_root` -> --data-root; `pretrained` ->
    --no-pretrained); settings this command has no option for are left out."""
    flags = []
    for setting in err.settings:
        dashed = setting.replace("_", "-")
        for param in getattr(command, "params", []):
            if isinstance(param, click.Option) and (
                param.name == setting or {f"--{dashed}", f"--no-{dashed}"} & set(param.opts)
            ):
                flags.append(max(param.opts, key=len))
                break
    return flags


def user_message(err: UserError, command: click.Command | None) -> str:
    """The library's message, plus the flag that fixes it where the message does not name it already."""
    message = str(err)
    flags = [flag for flag in flags_for(err, command) if flag not in message]
    if not flags:
        return message
    return f"{message.rstrip().rstrip('.')} (use {' or '.join(flags)})."


@contextlib.contextmanager
def stoppable(resume: Callable[[Interrupted], str]) -> Iterator[None]:
    """Long work: SIGINT / SIGTERM stop it at a safe point; the line it ends with says how to continue
    (`resume(err)`, e.g. the same command again, or `distill --out RUN --resume`)."""
    from dait_edge.utils.signals import stop_on_signal

    try:
        with stop_on_signal():
            yield
    except Interrupted as err:
        err.resume = err.resume or resume(err)
        raise


class UserErrorGroup(click.Group):
    """Turns a UserError raised anywhere below into `error: ...` on stderr and exit code 2, no traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # a bad option value, caught by click: one line too
            if err.ctx is None or err.ctx is ctx:
                raise  # the group's own usage (no command, unknown command): click's usage block helps there
            message = err.format_message().rstrip(".")
            click.echo(f"error: {message}; see `{err.ctx.command_path} --help`.", err=True)
            ctx.exit(UserError.exit_code)
        except UserError as err:
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            click.echo(f"error: {user_message(err, command)}", err=True)
            ctx.exit(UserError.exit_code)
        except ModuleNotFoundError as err:
            user_error = missing_full_install(err, ctx.invoked_subcommand)
            if user_error is None:
                raise
            click.echo(f"error: {user_error}", err=True)
            ctx.exit(UserError.exit_code)
        except Interrupted as err:
            resume = f"; to continue: {err.resume}" if err.resume else ""
            click.echo(f"stopped: {err}{resume}", err=True)
            ctx.exit(err.exit_code)
