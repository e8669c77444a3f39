"""Check the package's import rules, the ones that make its layout mean something.

    python3 scripts/check_layout.py        # exit 1 and one line per broken rule

- ``crawl/`` (the registry side) never imports Flask, Werkzeug, ldap3 or anything from ``web/``;
- ``web/`` (the serving side) never imports requests, urllib3, ldap3 or anything from ``crawl/``;
- the pure core (``model``, ``sizes``, ``growth``) imports nothing from the package but itself, and does no
  I/O or logging.

Imports are read from the syntax tree (relative ones resolved), so a rule cannot be dodged by an
import inside a function.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "gitlab_registry_usage_rest"
CORE = (f"{PACKAGE}.model", f"{PACKAGE}.sizes", f"{PACKAGE}.growth")
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# (module prefix the rule applies to, imported prefixes it forbids, why)
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (f"{PACKAGE}.crawl", ("flask", "flask_", "werkzeug", "ldap3", f"{PACKAGE}.web"),
     "the crawl side never imports the web side, Flask or ldap3"),
    (f"{PACKAGE}.web", ("requests", "urllib3", "ldap3", f"{PACKAGE}.crawl"),
     "the web side never imports the crawl side, requests or ldap3"),
    (f"{PACKAGE}.model", (PACKAGE, "requests", "flask", "logging", "time"), "the pure core does no I/O"),
    (f"{PACKAGE}.sizes", (PACKAGE, "requests", "flask", "logging", "time"), "the pure core does no I/O"),
    (f"{PACKAGE}.growth", (PACKAGE, "requests", "flask", "logging", "time", "sqlite3"), "the pure core does no I/O"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, absolute, with its line number."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}" if node.level and not node.module else target


def matches(imported: str, prefix: str) -> bool:
    if prefix.endswith("_"):
        return imported.startswith(prefix)
    return imported == prefix or imported.startswith(prefix + ".")


def broken() -> Iterator[str]:
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        seen: set[tuple[int, str]] = set()
        for scope, forbidden, why in RULES:
            if not matches(name, scope):
                continue
            for line, imported in imports(path):
                if scope in CORE and any(matches(imported, core) for core in CORE):
                    continue
                if any(matches(imported, prefix) for prefix in forbidden) and (line, imported) not in seen:
                    seen.add((line, imported))
                    yield f"{path.relative_to(ROOT.parent)}:{line}: imports {imported}: {why}"


def main() -> int:
    problems = list(broken())
    for problem in problems:
        sys.stdout.write(problem + "\n")
    checked = len(list(ROOT.rglob("*.py")))
    sys.stdout.write(f"layout: {checked} modules checked, {len(problems)} broken import rules\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
