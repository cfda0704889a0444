"""What a profile measures, found from the paths given: the files or runs its runtime's runner serves.

Reads JSON only (sidecars, run summaries), so finding artifacts needs neither torch nor a GPU.
"""

from __future__ import annotations

from pathlib import Path

from dait_edge.errors import UserError
from dait_edge.profiling.runner import runner_for
from dait_edge.profiling.target import Profile


def find_artifacts(paths: list[str | Path], profile: Profile) -> list[Path]:
    """Files as given; folders contribute what the profile's runner measures, in the formats it targets."""
    runner = runner_for(profile.runtime)
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(runner.accept(path, profile))
        elif path.is_dir():
            found += runner.find(path, profile)
        else:
            raise UserError(f"{path} does not exist; pass exported artifacts or the folder that holds them.")
    unique, seen = [], set()
    for path in found:  # a file given and found again in its folder is measured once
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    if not unique:
        formats = f" (formats {', '.join(profile.formats)})" if profile.formats else ""
        raise UserError(
            f"no {runner.measures} for profile {profile.name}{formats} under {', '.join(map(str, paths))};"
            f" run {runner.made_by} first."
        )
    return unique
