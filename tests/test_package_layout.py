"""The house rules, read from the package's own source: layers import one way and nothing imports in a
circle, package faces only re-export, modules stay small, and a run folder's names are spelled in one
module (records/layout.py)."""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import dait_edge

PACKAGE = Path(dait_edge.__file__).parent
# Bottom to top. A module imports from its own layer or below; within a layer the folders form no circle
# (engine sits above methods, profiling above export, ...), which test_folders_import_one_way checks.
LAYERS = (
    ("__init__", "errors", "registry", "utils", "records", "losses", "config"),
    ("data", "models", "methods", "engine", "vlm"),
    ("distill", "export", "profiling", "report"),
    ("sweep", "demo", "cli", "__main__"),
)
LAYER_OF = {folder: level for level, folders in enumerate(LAYERS) for folder in folders}
MAX_LINES = 450
# What only records/layout.py spells: the folders and files inside a run (and a sweep's runs/).
RUN_FOLDERS = {"export", "profile", "stage1", "stage2", "teachers", "runs"}
RUN_FILES = {
    "student_last.safetensors",
    "student_best.safetensors",
    "teacher.safetensors",
    "teacher_best.safetensors",
    "state.pt",
}
LAYOUT_MODULE = "dait_edge.records.layout"


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imports(module: str) -> list[tuple[str, int]]:
    """(imported module of this package, line) for every import in `module`, those inside functions too;
    imports under `if TYPE_CHECKING:` (annotations only) are not imports at run time and are left out."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
            found.extend((name, node.lineno) for name in submodules)
            if len(submodules) < len(node.names):  # names defined in `base` itself
                found.append((base, node.lineno))
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return [(name, line) for name, line in found if name in MODULES and name != module]


IMPORTS = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], itertools.count()

    def connect(v):
        index[v] = low[v] = next(counter)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_folder_has_a_layer():
    assert {_folder(m) for m in MODULES} <= set(LAYER_OF), {_folder(m) for m in MODULES} - set(LAYER_OF)


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = [
        f"{module}:{line} imports {target}"
        for module, targets in IMPORTS.items()
        for target, line in targets
        if LAYER_OF[_folder(target)] > LAYER_OF[_folder(module)]
    ]
    assert not upward, "\n".join(upward)


def test_no_module_imports_itself_in_a_circle():
    graph = {module: {target for target, _ in targets} for module, targets in IMPORTS.items()}
    assert _cycles(graph) == []


def test_folders_import_one_way():
    """Not even through other modules: within a layer the folders are ordered too (engine above methods,
    vlm above engine's loaders, profiling above export, report on records alone)."""
    graph: dict[str, set[str]] = {}
    for module, targets in IMPORTS.items():
        for target, _ in targets:
            if _folder(target) != _folder(module):
                graph.setdefault(_folder(module), set()).add(_folder(target))
    assert _cycles(graph) == []
    assert "engine" not in graph.get("methods", set())  # the batch type belongs to the method contract
    assert "profiling" not in graph.get("report", set())  # a report reads records, not the profiler


def test_the_checks_above_can_fail():
    """The cycle finder and the import reader see what they should: a planted circle, a lazy import and an
    import only for annotations."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    distill_run = dict(IMPORTS["dait_edge.distill.stages"])
    assert "dait_edge.distill.context" not in distill_run  # under TYPE_CHECKING only
    assert "dait_edge.engine.evaluate" in distill_run  # imported at the top
    assert "dait_edge.models.heads" in dict(IMPORTS["dait_edge.export.source"])  # inside a function


def test_no_module_is_over_the_line_limit():
    long = {module: n for module, path in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_package_faces_only_re_export():
    """A package's __init__ holds imports, __all__ and at most a lazy __getattr__: its rooms are modules."""
    allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.Expr)
    for module, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            lazy = isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
            assert lazy or isinstance(node, allowed), f"{module}:{node.lineno} {type(node).__name__}"


def _run_folder_names(path: Path) -> list[str]:
    """Where a module builds a path from a run folder's names: `x / "export"`, or a path string such as
    "stage2/student_last.safetensors". Docstrings and messages (text with spaces) are words, not paths."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
            if node.right.value in RUN_FOLDERS | RUN_FILES:
                found.append(f"{node.lineno}: / {node.right.value!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            text = node.value
            if " " in text:
                continue
            parts = set(text.replace("\\", "/").split("/"))
            if text in RUN_FILES or ("/" in text and parts & (RUN_FOLDERS | RUN_FILES)):
                found.append(f"{node.lineno}: {text!r}")
    return found


def test_a_run_folders_names_are_spelled_in_one_module():
    spelled = {module: names for module, path in MODULES.items() if (names := _run_folder_names(path))}
    assert set(spelled) == {LAYOUT_MODULE}, {m: n for m, n in spelled.items() if m != LAYOUT_MODULE}


def test_the_name_check_sees_a_path_spelled_by_hand(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        '"""stage2/student_last.safetensors in a docstring is words."""\n'
        'a = run / "export"\n'
        'b = "stage2/student_last.safetensors"\n'
        'c = f"see {run} for the export"\n'
    )
    assert _run_folder_names(planted) == ["2: / 'export'", "3: 'stage2/student_last.safetensors'"]
