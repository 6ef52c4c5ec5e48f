"""A cell's source as durable_nb reads it: its top-level statements (each one is a
checkpoint) and the names it reads (the notebook variables that travel with it)."""

from __future__ import annotations

import ast


def split_statements(source: str) -> list[tuple[int, str]]:
    """(first line, source) of each top-level statement, decorators included."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    out = []
    for node in tree.body:
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        out.append((first, "".join(lines[first - 1:node.end_lineno])))
    return out


def names_read(source: str) -> set[str]:
    """Names a cell loads (candidates to take from the notebook's namespace)."""
    return {n.id for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
