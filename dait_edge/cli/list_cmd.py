"""`dait-edge list KIND`: what can be named on the command line, one per line (or --json)."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable

import click

from dait_edge.records.config import DEFAULT_VLM as VLM_NAME
from dait_edge.records.config import DEFAULT_VLM_PRETRAINED

KINDS = ("students", "teachers", "methods", "recipes", "datasets", "vlms", "profiles", "runtimes", "formats")
DEFAULT_VLM = (VLM_NAME, DEFAULT_VLM_PRETRAINED)  # method.md's default VLM teacher

Entry = dict  # {"name", "description", "aliases", "default"} (+ "pretrained" for vlms)


def _entry(name: str, description: str, aliases=(), default: bool = False, **extra) -> Entry:
    return {"name": name, "description": description, "aliases": list(aliases), "default": default, **extra}


def _from_registry(registry, default: str | None = None) -> list[Entry]:
    return [_entry(n, registry.describe(n), registry.aliases_of(n), default=n == default) for n in registry]


def _students() -> list[Entry]:
    from dait_edge.models import STUDENTS

    return _from_registry(STUDENTS)


def _teachers() -> list[Entry]:
    from dait_edge.models import DEFAULT_TEACHER, TEACHERS

    return _from_registry(TEACHERS, default=DEFAULT_TEACHER)


def _methods() -> list[Entry]:
    try:
        module = importlib.import_module("dait_edge.methods")
    except ModuleNotFoundError as err:
        if err.name != "dait_edge.methods":  # a broken import inside methods is a real bug
            raise
        return []
    registry = getattr(module, "METHODS", None)
    return _from_registry(registry) if registry is not None else []


def _recipes() -> list[Entry]:
    from dait_edge.methods.base import recipes
    from dait_edge.records.recipe import SHARED_RECIPE

    return [
        _entry(name, f"{recipe.describe()} (from {recipe.source})", default=name == SHARED_RECIPE)
        for name, recipe in recipes().items()
    ]


def _datasets() -> list[Entry]:
    importlib.import_module("dait_edge.data")  # its __init__ imports the readers, which register
    from dait_edge.data.base import DATASETS

    return _from_registry(DATASETS)


def _vlms() -> list[Entry]:
    import open_clip

    return [
        _entry(model, f"pretrained={tag}", default=(model, tag) == DEFAULT_VLM, pretrained=tag)
        for model, tag in open_clip.list_pretrained()
    ]


def _profiles() -> list[Entry]:
    from dait_edge.profiling import profiles

    if not profiles.PROFILES_DIR.is_dir():
        return []
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    entries = []
    for path in sorted(profiles.PROFILES_DIR.glob("*.toml")):
        try:
            description = str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            description = f"unreadable ({err}): fix or remove {path.name}"
        entries.append(_entry(path.stem, description))
    return entries


def _runtimes() -> list[Entry]:
    from dait_edge.profiling.runner import runners

    registry = runners()
    return [
        _entry(name, f"{registry.describe(name)} ({', '.join(registry.get(name).suffixes)})")
        for name in registry
    ]


def _formats() -> list[Entry]:
    from dait_edge.export.recipes import ALIASES, RECIPES_DIR

    entries = []
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        aliases = [alias for alias, names in ALIASES.items() if names == (path.stem,)]
        entries.append(_entry(path.stem, _toml_description(path), aliases))
    return entries


def _toml_description(path) -> str:
    import tomllib

    try:
        return str(tomllib.loads(path.read_text(encoding="utf-8")).get("description", ""))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        return f"unreadable ({err}): fix or remove {path.name}"


_SOURCES: dict[str, Callable[[], list[Entry]]] = {
    "students": _students,
    "teachers": _teachers,
    "methods": _methods,
    "recipes": _recipes,
    "datasets": _datasets,
    "vlms": _vlms,
    "profiles": _profiles,
    "runtimes": _runtimes,
    "formats": _formats,
}

_FOOTERS = {
    "students": "Any timm model name also works (e.g. resnet10t).",
    "teachers": "Any timm model name also works (e.g. convnext_tiny).",
    "vlms": "Any OpenCLIP model works; weights also from a local file, local-dir: or hf-hub:.",
    "recipes": "--recipe own: the method's own (shared where it has none); an option given beside it wins.",
}


def list_entries(kind: str) -> list[Entry]:
    """The entries `dait-edge list KIND` shows, as dicts (also what --json prints)."""
    return _SOURCES[kind]()


def format_entries(entries: list[Entry]) -> str:
    width = max((len(e["name"]) for e in entries), default=0)
    lines = []
    for e in entries:
        text = e["description"]
        if e["aliases"]:
            text += f" (aliases: {', '.join(e['aliases'])})"
        if e["default"]:
            text += " [default]"
        lines.append(f"{e['name']:<{width}}  {text}".rstrip())
    return "\n".join(lines)


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list of {name, description, aliases, default}."
)
def list_cmd(kind: str, as_json: bool) -> None:
    """List the students, teachers, methods, training recipes, datasets, VLMs or target profiles you can name.

    Students and intermediate teachers also accept any timm model name.
    """
    entries = list_entries(kind)
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if entries:
        click.echo(format_entries(entries))
    else:
        click.echo(f"(no {kind} yet)", err=True)
    if kind in _FOOTERS:
        click.echo(_FOOTERS[kind], err=True)  # stderr: stdout stays one entry per line


command = list_cmd
