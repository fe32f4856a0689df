"""The layers of docs/architecture.md, checked on the source: the runtime never imports the
training stage, no module imports another's private names, module-level imports form no cycle,
and every command the root group names loads and runs its help without the other stage."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aetool"


def modules() -> dict[str, Path]:
    return {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
            for p in PACKAGE.rglob("*.py")}


def imports(name: str, path: Path, top_level_only: bool = False,
            run_time_only: bool = False) -> list[tuple[str, list[str]]]:
    """(module imported, names taken from it) for each import statement of ``path``, made absolute;
    ``run_time_only``: without those under ``if TYPE_CHECKING:``, which only a type checker runs."""
    tree = ast.parse(path.read_text())
    if run_time_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                node.body = [ast.Pass()]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.append((target, [alias.name for alias in node.names]))
    return out


def test_the_runtime_never_imports_the_training_stage():
    offenders = [f"{name} imports {target}" for name, path in modules().items()
                 if not name.startswith("aetool.training")
                 for target, names in imports(name, path)
                 if target.startswith("aetool.training") or (target == "aetool" and "training" in names)]
    assert offenders == []


def test_no_module_imports_private_names_of_another():
    offenders = [f"{name}: {target}.{n}" for name, path in modules().items() for target, names in imports(name, path)
                 if target.startswith("aetool") and target != name
                 for n in names if n.startswith("_") and not n.startswith("__")]
    assert offenders == []


def test_module_level_imports_form_no_cycle():
    mods = modules()
    graph = {name: {t for t, names in imports(name, path, top_level_only=True)
                    for t in [t, *(f"{t}.{n}" for n in names)] if t in mods and t != name}
             for name, path in mods.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [node, nxt]))
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_every_named_command_loads_from_its_module():
    from aetool.cli import COMMANDS, main

    ctx = click.Context(main)
    for name, target in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name, target
        stage = "training" if target.startswith("aetool.training.") else "runtime"
        assert stage == ("training" if name in {"train", "export", "train-classifier", "compare", "bench"}
                         else "runtime"), name


def test_a_runtime_command_loads_neither_torch_nor_the_training_stage(tmp_path):
    code = ("import sys; from aetool.cli import main\n"
            "try:\n    main(['sample', '-n', '4', '-o', 'x.png', '-q'])\nexcept SystemExit as e:\n    assert not e.code\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('aetool.training')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_folder_of_modules_is_a_package():
    """setuptools' find ships only folders with an __init__.py: one without it works from the source
    tree and is missing from the wheel."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert sorted(str(f) for f in folders if not (f / "__init__.py").exists()) == []


def test_the_family_registry_imports_nothing_that_imports_it():
    """families.py builds and fits models by calling other modules (lazily, inside its methods); none
    of those may import the registry back, at any depth, lazily or not: a registry that imports what
    its callers run is a circle of modules."""
    mods = modules()

    graph = {name: {t for t, names in imports(name, path, run_time_only=True) for t in [t, *(f"{t}.{n}" for n in names)]
                    if t in mods and t != name}
             for name, path in mods.items()}
    start = "aetool.training.families"
    seen, todo, parent = set(), [start], {}
    while todo:
        node = todo.pop()
        for nxt in graph[node]:
            if nxt == start:
                trail = [node]
                while trail[-1] != start:
                    trail.append(parent[trail[-1]])
                pytest.fail("families.py reaches itself: " + " -> ".join(reversed(trail)) + " -> " + start)
            if nxt not in seen:
                seen.add(nxt)
                parent[nxt] = node
                todo.append(nxt)
