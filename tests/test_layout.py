"""The house by job: each package imports only the rooms below it (docs/layout.md), the
numpy packages never import TensorFlow, and the public import paths still work."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "deeplab"

# package -> the project's packages it may import (itself always); `training` from the
# experiment's stages only inside a function (lazily).
ALLOWED = {
    "errors": set(),
    "active": set(),
    "parallel": set(),
    "io_utils": set(),
    "paths": set(),
    "core": set(),
    "model": {"core"},
    "datasets": {"io_utils", "paths", "parallel"},
    "viz": {"datasets", "io_utils"},
    "training": {"core", "model", "datasets", "io_utils", "paths"},
    "experiment": {"active", "datasets", "parallel", "viz", "io_utils", "paths", "model", "training"},
    "annotate": {"experiment", "active", "viz", "datasets", "io_utils", "paths"},
    "cli": {"experiment", "annotate", "active", "datasets", "parallel", "io_utils", "paths"},
    # the command-line modules of DeepLab's names and the re-export kept for outside code
    "train": {"cli", "training", "model", "datasets"},
    "eval": {"cli", "training", "io_utils"},
    "export_model": {"cli", "training"},
    "checkpoints": {"training"},
}
# every room may raise the one class of errors a user can fix (deeplab/errors.py imports nothing)
for _pkg, _rooms in ALLOWED.items():
    if _pkg != "errors":
        _rooms.add("errors")
LAZY_ONLY = {("experiment", "training"), ("experiment", "model")}


def _package(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def _imports(path: Path):
    """(imported deeplab module, at module level?) of every import in the file."""
    tree = ast.parse(path.read_text())
    top = set(id(n) for n in tree.body)
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeplab"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("deeplab")]
        for n in names:
            yield n, id(node) in top


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(p for p in parts if p != "__init__"), path


def test_every_package_imports_only_the_rooms_below_it():
    bad = []
    for module, path in _modules():
        pkg = _package(module)
        if not pkg:
            continue
        assert pkg in ALLOWED, f"{module}: a new room; add it to ALLOWED and docs/layout.md"
        for imported, at_top in _imports(path):
            other = _package(imported)
            if other in ("", pkg) or other not in ALLOWED:
                continue  # deeplab itself, its own package, or a name (not a module) of deeplab
            if other not in ALLOWED[pkg]:
                bad.append(f"{module} imports {imported}")
            elif at_top and (pkg, other) in LAZY_ONLY:
                bad.append(f"{module} imports {imported} at module level (only lazily)")
    assert not bad, "\n".join(bad)


def test_the_rooms_form_no_circle():
    """The package graph of the code's own imports (every import, lazy ones included) has no
    circle: a room that imports a room above it fails here even if ALLOWED were changed."""
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        pkg = _package(module)
        if pkg:
            graph.setdefault(pkg, set()).update(
                other for imported, _ in _imports(path)
                if (other := _package(imported)) not in ("", pkg) and other in ALLOWED)
    assert graph["experiment"] and graph["annotate"]  # the walk found the imports
    _assert_no_circle(graph)


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
    """Depth-first over the import graph; a node met again on the current path is a circle,
    reported as the path around it."""
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            visit(n, trail + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


NUMPY_ROOMS = ("active", "experiment", "annotate", "viz")


def test_numpy_rooms_do_not_import_tensorflow():
    """Every module of active/, experiment/, annotate/ and viz/ (found on disk, so a new one is
    checked too), the executor and the TFRecord module (TensorFlow only inside the functions
    that read or write records: a resumed driver skips complete records without it) import
    without TensorFlow."""
    names = [m for m, _ in _modules() if _package(m) in NUMPY_ROOMS + ("parallel",)]
    # the data side a resumed driver touches: completeness checks, descriptors
    names += ["deeplab.datasets.descriptors", "deeplab.datasets.tfrecord", "deeplab.datasets.build_data"]
    active = {m.rsplit(".", 1)[1] for m in names if m.startswith("deeplab.active.")}
    assert {"adaptive", "regions", "acquisition", "sieving", "oracle", "labels", "review"} <= active
    assert "deeplab.experiment.stages" in names and "deeplab.annotate.server" in names
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n"
            "    importlib.import_module(n)\n"
            "    assert 'tensorflow' not in sys.modules, n + ' imports tensorflow'\n"
            "print('ok', len(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_active_is_arrays_only():
    """deeplab/active reads no file and writes none: no open(), no Path, no io_utils."""
    for module, path in _modules():
        if _package(module) != "active":
            continue
        text = path.read_text()
        for word in ("open(", "pathlib", "io_utils", "np.load(", "np.save"):
            assert word not in text, f"{module} uses {word}: disk belongs in deeplab/experiment"


@pytest.mark.parametrize("path", [
    "deeplab.active.adaptive:merge_superpixels", "deeplab.active.regions:region_statistics",
    "deeplab.active.acquisition:class_balanced_scores", "deeplab.active.sieving:sieve_labels",
    "deeplab.model:ModelOptions", "deeplab.model:build_model",
    "deeplab.checkpoints:load_tf1_checkpoint", "deeplab.datasets.tfrecord:read_examples",
    "deeplab.datasets.tfrecord:make_example", "deeplab.datasets.data_generator:build_dataset",
    "deeplab.train:main", "deeplab.eval:main", "deeplab.export_model:main"])
def test_public_import_paths(path):
    """The names relied on outside the repository import from their documented paths, are
    the project's own objects (a re-export is the defining module's object), and the command
    lines among them answer --help."""
    import importlib
    import inspect

    module, name = path.split(":")
    obj = getattr(importlib.import_module(module), name)
    assert obj.__module__.startswith("deeplab.")
    assert getattr(importlib.import_module(obj.__module__), name) is obj
    if name == "main":
        with pytest.raises(SystemExit) as e:
            obj(["--help"])
        assert e.value.code == 0
    else:
        assert inspect.signature(obj).parameters or inspect.isclass(obj)


def test_the_code_raises_named_errors_for_what_a_user_can_fix():
    """What the scripts print as one line is `deeplab.errors.UserError` (cli.EXPECTED_ERRORS; besides
    it only the system's refusal of a file it names, cli.user_error): a bare ValueError, OSError,
    RuntimeError, FileNotFoundError or ImportError raised by this code would show a traceback to the
    user instead; raise the named error (BadInput, MissingFile, Unavailable, CannotContinue,
    MissingPackage), or, for a defect, an AssertionError."""
    from deeplab import cli, errors

    assert cli.EXPECTED_ERRORS is errors.UserError
    bare = {"ValueError", "OSError", "RuntimeError", "FileNotFoundError", "ImportError", "IOError"}
    found = []
    for path in sorted(ROOT.rglob("*.py")) + sorted((ROOT.parent / "scripts").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            exc = node.exc if isinstance(node, ast.Raise) else None
            name = exc.func if isinstance(exc, ast.Call) else exc
            if isinstance(name, ast.Name) and name.id in bare:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} raises {name.id}")
    assert not found, "\n".join(found)
    for name in ("BadInput", "MissingFile", "Unavailable", "CannotContinue", "MissingPackage"):
        assert issubclass(getattr(errors, name), errors.UserError)


def test_no_module_imports_a_module_that_imports_it_back():
    """The module graph (every import of deeplab's own modules, lazy ones included) has no
    circle: the packages' order above cannot see two modules of one package, or a lazy import
    back, that import each other."""
    modules = {m for m, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for module, path in _modules():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("deeplab"):
                for a in node.names:  # `from deeplab.x import y`: the module y, else x (y a name)
                    sub = f"{node.module}.{a.name}"
                    targets.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("deeplab"))
        graph[module] = {t for t in targets if t in modules and t not in (module, "deeplab")}
    assert "deeplab.experiment.answers" in graph["deeplab.annotate.ls_loop"]
    _assert_no_circle(graph)
