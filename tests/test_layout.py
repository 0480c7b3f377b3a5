"""The layout's rules, checked statically (milliseconds): every module sits where its import
path says, no module imports one that imports it back (bench included), imports sit at the top
of a module unless the module says why not (a measured import cost), and the benchmarks are a
package (no sys.path edits) of functions that fit on a screen."""
from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

from conftest import ROOT

BENCH = ROOT / "bench"
# Function-level imports that are allowed, each with its stated reason in the code.
LAZY = {("musicmap/__init__.py", "musicmap.api"), ("musicmap/train/export.py", "matplotlib"),
        ("musicmap/train/export.py", "matplotlib.pyplot"), ("musicmap/recommend/ranker.py", "lightgbm"),
        ("musicmap/schemas.py", "pyspark.sql.pandas.types"), ("bench/common.py", "psutil")}
LONGEST_BENCH_FUNCTION = 80      # lines


def modules() -> dict[str, Path]:
    """{import name: file} of the package and the benchmarks (the bench package: python -m
    bench.<name>)."""
    out = {}
    for f in sorted([*(ROOT / "musicmap").rglob("*.py"), *BENCH.glob("*.py")]):
        parts = f.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def imports(f: Path, known: dict) -> list[tuple[str, ast.AST]]:
    """(module imported, the statement) of every import of f naming a project module; `from a
    import b` imports a.b when that is a module (a package's __init__ is not a module's peer)."""
    out = []
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in known:
                    out.append((full, node))
                elif node.module in known:
                    out.append((node.module, node))
    return out


def test_every_module_is_where_its_import_path_says():
    for name, f in modules().items():
        if not name.startswith("musicmap"):
            continue
        spec = importlib.util.find_spec(name)
        assert spec is not None and Path(spec.origin).resolve() == f.resolve(), (name, spec and spec.origin)
    # the top-level job folders hold entry scripts only, each a few lines into the package
    for entry in ("spark_jobs/build_graph.py", "train/main.py", "recommend/main.py"):
        text = (ROOT / entry).read_text()
        assert len(text.splitlines()) <= 15 and "from musicmap." in text, entry
    for folder in ("spark_jobs", "train", "recommend"):
        assert sorted(p.name for p in (ROOT / folder).glob("*.py")) in (["build_graph.py"], ["main.py"]), folder


def test_no_module_imports_one_that_imports_it_back():
    known = modules()
    deps = {name: {m for m, _ in imports(f, known) if m != name} for name, f in known.items()}

    def path(a, b, seen=()):
        """A chain of imports from a to b, or None."""
        for n in deps[a]:
            if n == b:
                return [a, b]
            if n not in seen:
                rest = path(n, b, (*seen, n))
                if rest:
                    return [a, *rest]
        return None
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    cycles = [path(b, a) for a in deps for b in deps[a] if path(b, a)]
    assert not cycles, cycles[:5]


def test_imports_sit_at_the_top_unless_a_cost_is_stated():
    known = modules()
    inner = []
    for name, f in known.items():
        tree = ast.parse(f.read_text())
        top = {id(n) for n in tree.body}
        rel = f.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if (rel, mod) not in LAZY:
                    inner.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    assert not inner, inner


def test_dependencies_run_one_way():
    """The core imports no job (but its entry points: the command line, the demo, the API);
    spark_jobs and train import no later stage; recommend imports no tool."""
    known = modules()
    later = {"core": ("spark_jobs", "train", "recommend", "tools"), "spark_jobs": ("train", "recommend", "tools"),
             "train": ("spark_jobs", "recommend", "tools"), "recommend": ("spark_jobs", "tools"), "tools": ("spark_jobs",)}
    entry = {"musicmap.cli", "musicmap.demo", "musicmap.dist", "musicmap.api", "musicmap"}
    wrong = []
    for name, f in known.items():
        parts = name.split(".")
        if parts[0] != "musicmap" or name in entry:
            continue
        home = parts[1] if len(parts) > 2 and parts[1] in later else "core"
        for m, node in imports(f, known):
            if m.split(".")[1:2] and m.split(".")[1] in later[home]:
                wrong.append(f"{name}:{node.lineno} imports {m}")
    assert not wrong, wrong


def test_the_benchmarks_are_a_package_of_short_functions():
    """bench/ runs as `python -m bench.<name>`: no script edits sys.path to find another, and no
    function is longer than a screen."""
    long, path_edits = [], []
    for f in sorted(BENCH.glob("*.py")):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > LONGEST_BENCH_FUNCTION:
                    long.append(f"{f.name}:{node.name} {n} lines")
            if isinstance(node, ast.Attribute) and ast.unparse(node) in ("sys.path.insert", "sys.path.append"):
                path_edits.append(f"{f.name}:{node.lineno}")
    assert (BENCH / "__init__.py").exists()
    assert not long and not path_edits, (long, path_edits)


def test_after_training_only_the_model_and_its_fold_in_come_from_train():
    """recommend and the tools read what train committed (musicmap.train.export) and fold new
    playlists in as it does (musicmap.train.foldin); the graph's reader, the cases and the torchrun
    helpers are the shared core's (musicmap.graph, musicmap.cases, musicmap.distributed)."""
    known = modules()
    allowed = {"musicmap.train.export", "musicmap.train.foldin"}
    wrong = [f"{name}:{node.lineno} imports {m}" for name, f in known.items()
             if name.startswith(("musicmap.recommend", "musicmap.tools"))
             for m, node in imports(f, known) if m.startswith("musicmap.train") and m not in allowed]
    assert not wrong, wrong
