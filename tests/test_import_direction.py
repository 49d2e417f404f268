"""The dependency picture has one direction (docs/architecture.md), read from imports.

server → core → engine interface; engines implement the interface and use
post-processing; clients import nothing from `server/` or the engines. The
test reads every module's imports with `ast` (lazy imports inside functions
included), so a new import that points the wrong way fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("server", "streaming", "clients")

# The engine interface: the vocabulary everyone shares; it imports no project module.
INTERFACE = {"streaming.engine", "streaming.errors"}


def layer(module: str) -> str:
    if module in INTERFACE:
        return "interface"
    for prefix, name in (("streaming.engines", "engines"), ("streaming.postprocess", "postprocess"),
                         ("streaming", "core"), ("server", "server"), ("clients", "clients")):
        if module == prefix or module.startswith(prefix + "."):
            return name
    return "outside"


# What each layer may import (besides itself and third-party modules).
ALLOWED = {
    "interface": set(),
    "postprocess": {"interface"},
    "engines": {"interface", "postprocess"},
    "core": {"interface"},
    "server": {"core", "interface", "engines", "postprocess"},
    "clients": {"interface"},
}
# The `captiond` command also offers the client subcommands (`captiond mic`, …).
EXCEPTIONS = {("server.cli", "clients.cli")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports(path: Path) -> set[str]:
    """Every project module the file imports, at top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from streaming.engines import funasr_adapter` imports a module too.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in PACKAGES and _exists(n))
    return found


def _exists(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def violations() -> list[str]:
    found = []
    for path in modules():
        importer = module_name(path)
        own = layer(importer)
        for imported in sorted(project_imports(path)):
            other = layer(imported)
            if other == own and own != "interface" or (importer, imported) in EXCEPTIONS:
                continue
            if own == "interface" and imported in INTERFACE and imported != importer:
                found.append(f"{importer} ({own}) imports {imported}")
            elif other not in ALLOWED[own]:
                found.append(f"{importer} ({own}) imports {imported} ({other})")
    return found


def test_imports_point_one_way():
    assert violations() == []


def test_every_package_module_is_checked():
    names = {module_name(p) for p in modules()}
    assert {"streaming.engine", "streaming.session", "server.app", "clients.client"} <= names
    assert "streaming.engines.paraformer" in names


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("streaming.session", "streaming.engines.paraformer"),  # core reaching into an engine
        ("streaming.engine", "streaming.session"),  # the interface importing the core
        ("streaming.engines.whisper", "streaming.session"),  # an engine importing the core
        ("clients.client", "server.protocol"),  # a client importing the server
        ("streaming.postprocess.hotwords", "streaming.engines.whisper"),
    ],
)
def test_the_rule_rejects_a_wrong_direction(importer, imported):
    own, other = layer(importer), layer(imported)
    assert other not in ALLOWED[own]
