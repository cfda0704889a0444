"""The one exception users see: a problem with their input, and what to do about it."""

from __future__ import annotations


class UserError(Exception):
    """Bad input (missing data, unknown name, unreadable weights).

    The CLI prints ``str(err)`` on one line and exits with code 2, without a traceback. The message
    names the problem and the fix in the library's words; `setting` names the setting that fixes it
    (a DistillConfig field or a command's option, e.g. "data_root"; several where either fixes it), and
    the CLI adds the flag that sets it (`--data-root`) where the message does not already say it.
    Library code never names flags.
    """

    exit_code = 2

    def __init__(self, message: str, *, setting: str | tuple[str, ...] | None = None):
        super().__init__(message)
        self.settings: tuple[str, ...] = (setting,) if isinstance(setting, str) else tuple(setting or ())


class QATDiverged(UserError):
    """Quantisation-aware training's loss became NaN or infinite: a training outcome, not bad input. An
    export reports the QAT formats as not built, with this line, and builds the others."""


class Interrupted(Exception):
    """SIGINT / SIGTERM stopped the work at a safe point. The CLI prints the message (what was running, what
    is saved) and how to resume, and exits with 128 + the signal's number, as a shell does."""

    def __init__(self, signum: int, message: str, *, resume: str | None = None):
        super().__init__(message)
        self.signum = signum
        self.resume = resume  # the command that continues the work, where the CLI knows it
        self.folder = None  # the run directory a distill stopped in

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
