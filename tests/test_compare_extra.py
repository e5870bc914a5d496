"""
``pip install ".[compare]"`` is enough to run ``compare``: every third-party module that ``sb3_ppo_variants.compare``
imports (directly, or through the package's own modules it imports) is installed by the core requirements and the
``compare`` extra of setup.cfg, or by their own requirements.
"""

import ast
import collections
import configparser
import importlib.metadata
import inspect
import re
import sys
from pathlib import Path

from packaging.requirements import Requirement

import sb3_ppo_variants
from sb3_ppo_variants.compare.requirements import REQUIRED_MODULES

PACKAGE = Path(sb3_ppo_variants.__file__).parent
SETUP_CFG = PACKAGE.parent / "setup.cfg"


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_file(module: str) -> Path | None:
    path = PACKAGE.parent.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def imported_modules(root: str) -> set[str]:
    """Top-level names of the modules imported by ``root`` and every package module it imports, parents included."""
    seen: set[str] = set()
    todo = [str(path.relative_to(PACKAGE.parent).with_suffix("")).replace("/", ".") for path in (PACKAGE / root).glob("*.py")]
    found: set[str] = set()
    while todo:
        module = todo.pop().removesuffix(".__init__")
        parts = module.split(".")
        for parent in (".".join(parts[:index]) for index in range(1, len(parts) + 1)):  # importing a.b runs a/__init__
            path = _module_file(parent)
            if parent in seen or path is None:
                continue
            seen.add(parent)
            for node in ast.walk(ast.parse(path.read_text())):
                names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    if name.startswith("sb3_ppo_variants"):
                        todo.append(name)
                    else:
                        found.add(name.split(".")[0])
    return found - set(sys.stdlib_module_names)


def packages_distributions() -> dict[str, list[str]]:
    """
    ``importlib.metadata.packages_distributions()`` as Python 3.11 and newer compute it: a distribution without
    ``top_level.txt`` (numpy, matplotlib, rich) provides the top-level names of the files it installed. Python 3.10's
    reads ``top_level.txt`` only.
    """
    found = collections.defaultdict(list)
    for distribution in importlib.metadata.distributions():
        names = (distribution.read_text("top_level.txt") or "").split() or {
            path.parts[0] if len(path.parts) > 1 else inspect.getmodulename(str(path)) or str(path)
            for path in distribution.files or []
        }
        for name in names:
            if "." not in name:
                found[name].append(distribution.metadata["Name"])
    return dict(found)


def installed_by(requirements: list[str]) -> set[str]:
    """The distributions pip installs for ``requirements``: them and, transitively, what they require."""
    closure: set[str] = set()
    todo = [Requirement(line) for line in requirements]
    while todo:
        requirement = todo.pop()
        key = (_normalize(requirement.name), *sorted(requirement.extras))
        if "|".join(key) in closure:
            continue
        closure |= {"|".join(key), key[0]}
        for line in importlib.metadata.requires(requirement.name) or []:
            nested = Requirement(line)
            extras = [{"extra": extra} for extra in requirement.extras] or [{"extra": ""}]
            if nested.marker is None or any(nested.marker.evaluate(environment) for environment in extras):
                todo.append(nested)
    return closure


def test_compare_extra_provides_every_import():
    config = configparser.ConfigParser()
    config.read(SETUP_CFG)
    lines = config["options"]["install_requires"].splitlines() + config["options.extras_require"]["compare"].splitlines()
    requirements = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    assert any(_normalize(Requirement(line).name) == "rl-zoo3" for line in requirements)  # named, not only pulled in
    installed = installed_by(requirements)
    distributions = packages_distributions()

    modules = imported_modules("compare") | set(REQUIRED_MODULES) | {"ray"}
    assert {"rl_zoo3", "rliable", "matplotlib", "numpy", "torch", "yaml", "rich", "optuna", "ray"} <= modules
    missing = {
        module: distributions.get(module)
        for module in modules
        if not installed & set(map(_normalize, distributions.get(module, [])))
    }
    assert not missing, f"imported by sb3_ppo_variants.compare but not installed by its extra: {missing}"
