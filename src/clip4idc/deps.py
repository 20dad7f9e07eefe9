"""What each stage depends on, derived from the source tree the orchestrators run:

- code: the import closure of its module, `stages/<stage>.py`, with the command line that runs it
  (`cli.py`): every module of this package that running the stage can import, function-level imports
  included, with each package's `__init__.py` (importing a module runs its parents), and the package
  data a module declares it reads (`PACKAGE_DATA`, globs relative to the package folder);
- params: the keys its module lists in `PARAMS` (`{dataset}` filled in), plus `profile` and the
  active profile's section (`profiles.<profile>`), through which a profile can override any key.

The Snakefile calls these at parse time; dvc.yaml lists the same files and keys (DVC cannot compute
them), and tests/test_workflow.py checks that the two agree. Nothing here is imported by a stage,
so editing this file re-runs nothing.
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE = "clip4idc"
SOURCE = Path("src") / PACKAGE          # the package's folder, relative to the repository root
COMMON_PARAMS = ("profile", "profiles.{profile}")


def _literal(tree: ast.Module, name: str, default: Any) -> Any:
    """The value of a module-level `name = <literal>`."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return default


@lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _module_file(package_dir: Path, dotted: str) -> Path | None:
    """The file of module `clip4idc.<...>` (a .py file or a package's __init__.py), if it exists."""
    parts = dotted.split(".")[1:]
    base = package_dir.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _dotted(package_dir: Path, path: Path) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(package_dir: Path, path: Path) -> set[str]:
    """Modules of this package that `path` imports anywhere (module level or inside functions)."""
    this = _dotted(package_dir, path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found = set()
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}   # `from pkg import submodule`
    ours = set()
    for name in found:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            ours.add(name)
    return ours


def code_files(stage: str, root: str | Path = ".") -> list[str]:
    """The files (relative to `root`, the repository) whose content decides what `clip4idc <stage>` does."""
    root = Path(root)
    package_dir = root / SOURCE
    start = package_dir / "stages" / f"{stage}.py"
    if not start.is_file():
        raise ValueError(f"no stage {stage!r}: expected its module at {start}")
    todo, seen = [package_dir / "cli.py", start], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        dotted = _dotted(package_dir, path)
        parents = [".".join(dotted.split(".")[:i]) for i in range(1, dotted.count(".") + 1)]
        for name in sorted(_imports(package_dir, path)) + parents:
            found = _module_file(package_dir, name)
            if found is not None and found not in seen:
                todo.append(found)
    data = set()
    for path in seen:
        for pattern in _literal(_parse(path), "PACKAGE_DATA", ()):
            data |= {p for p in package_dir.glob(pattern) if p.is_file()}
    return sorted(p.relative_to(root).as_posix() for p in seen | data)


def params_keys(stage: str, root: str | Path = ".", **wildcards: str) -> list[str]:
    """The params.yaml keys `clip4idc <stage>` reads (with the common ones), wildcards like `dataset` filled in."""
    path = Path(root) / SOURCE / "stages" / f"{stage}.py"
    declared = _literal(_parse(path), "PARAMS", None)
    if declared is None:
        raise ValueError(f"{path} declares no PARAMS")
    keys = (*COMMON_PARAMS, *declared) if declared else ()
    return [k.format(**wildcards) for k in keys]


def tracked_params(config: dict, stage: str, root: str | Path = ".", **wildcards: str) -> dict[str, Any]:
    """{key: value} of `params_keys` in the raw params (params.yaml as read, the profile switch applied):
    what Snakemake compares between runs, as DVC compares the same keys of params.yaml."""
    values = {}
    profile = config.get("profile")
    for key in params_keys(stage, root, profile=profile, **wildcards):
        node = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"params.yaml has no key {key!r}, which stage {stage!r} tracks (DVC needs every "
                               f"tracked key written out: add it, e.g. with its default)")
            node = node[part]
        values[key] = node
    return values
