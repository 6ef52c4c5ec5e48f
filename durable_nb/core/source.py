"""A cell's source as durable_nb reads it: its top-level statements (each one is a
checkpoint), the names it reads (the notebook variables that travel with it) and the names
it assigns (what later cells that read them wait for)."""

from __future__ import annotations

import ast
import symtable


def split_statements(source: str) -> list[tuple[int, str]]:
    """(first line, source) of each top-level statement, decorators included. Statements
    that share a line (``a = 1; b = 2``) are each their own text, not the line twice."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    out = []
    body = tree.body
    for i, node in enumerate(body):
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        shared = (i > 0 and body[i - 1].end_lineno == node.lineno) or (
            i + 1 < len(body) and body[i + 1].lineno == node.end_lineno)
        segment = ast.get_source_segment(source, node) if shared else None
        if segment is not None:
            out.append((first, segment + "\n"))
        else:
            out.append((first, "".join(lines[first - 1:node.end_lineno])))
    return out


def names_read(source: str | ast.AST) -> set[str]:
    """Names a cell loads (candidates to take from the notebook's namespace)."""
    tree = ast.parse(source) if isinstance(source, str) else source
    return {n.id for n in ast.walk(tree)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


_BINDS_FIRST = (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.FunctionDef,
                ast.AsyncFunctionDef, ast.ClassDef)


def names_needed(cell: str | ast.Module) -> set[str]:
    """The notebook variables a cell reads, more precisely than ``names_read``: not the
    names the cell itself binds for sure before reading them (``import time`` then
    ``time.time()``; a ``for`` or ``with`` target in its body), nor the local names of the
    functions, classes and comprehensions it defines. A cell needs a pending run's value
    of these names only."""
    tree = ast.parse(cell) if isinstance(cell, str) else cell
    try:
        return _needed_in(tree.body, set())
    except (SyntaxError, ValueError, RecursionError):  # symtable refused: read it all
        return names_read(tree)


def _needed_in(body: list[ast.stmt], bound: set[str]) -> set[str]:
    """Reads of a block whose earlier statements' unconditional bindings hide later reads."""
    own, needed = set(bound), set()
    for stmt in body:
        needed |= _needed_by(stmt, own)
        if isinstance(stmt, _BINDS_FIRST):  # unconditional bindings, after the reads
            own |= names_assigned(ast.Module([stmt], []))
    return needed


def _needed_by(stmt: ast.stmt, own: set[str]) -> set[str]:
    """Reads of one statement; a compound one's blocks see the names bound before them."""
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        target = names_assigned(ast.Module([ast.Assign([stmt.target], stmt.iter)], []))
        return (_reads(stmt.iter, own) | _needed_in(stmt.body, own | target)
                | _needed_in(stmt.orelse, own))
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        inner = own | names_assigned(ast.Module(
            [ast.Assign([i.optional_vars], i.context_expr) for i in stmt.items
             if i.optional_vars is not None], []))
        return (set().union(*(_reads(i.context_expr, own) for i in stmt.items))
                | _needed_in(stmt.body, inner))
    if isinstance(stmt, (ast.If, ast.While)):
        return (_reads(stmt.test, own) | _needed_in(stmt.body, own)
                | _needed_in(stmt.orelse, own))
    if isinstance(stmt, ast.Try):
        needed = (_needed_in(stmt.body, own) | _needed_in(stmt.orelse, own)
                  | _needed_in(stmt.finalbody, own))
        for h in stmt.handlers:
            needed |= (_reads(h.type, own) if h.type else set()) | _needed_in(
                h.body, own | ({h.name} if h.name else set()))
        return needed
    return _reads(stmt, own)


def _reads(node: ast.AST, own: set[str]) -> set[str]:
    """Module-scope names ``node`` reads, but ``own``."""
    return _global_reads(symtable.symtable(ast.unparse(node), "<cell>", "exec")) - own


def _global_reads(table: symtable.SymbolTable) -> set[str]:
    """Names read in module scope: at the top of ``table`` and as globals in nested scopes."""
    top = table.get_type() == "module"
    names = {s.get_name() for s in table.get_symbols()
             if s.is_referenced() and (top or s.is_global())}
    for child in table.get_children():
        names |= _global_reads(child)
    return names


def names_assigned(source: str | ast.AST) -> set[str]:
    """Names a cell binds in the notebook's namespace: assignments, ``for`` and ``with``
    targets, imports, ``def`` and ``class``, ``except ... as``, match captures and walrus
    targets, wherever they stand in module scope. Names bound only inside a function, a
    class body or a comprehension are not the notebook's, and are left out."""
    binder = _Binder()
    binder.visit(ast.parse(source) if isinstance(source, str) else source)
    return binder.names


class _Binder(ast.NodeVisitor):
    """Collects the module-scope names a tree binds (see ``names_assigned``)."""

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.in_comprehension = 0

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store) and not self.in_comprehension:
            self.names.add(node.id)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        # a walrus inside a comprehension binds in the enclosing scope (PEP 572)
        if isinstance(node.target, ast.Name):
            self.names.add(node.target.id)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:  # `x: int` alone binds nothing
            self.visit(node.target)
            self.visit(node.value)

    def _visit_comprehension(self, node: ast.AST) -> None:
        self.in_comprehension += 1
        self.generic_visit(node)
        self.in_comprehension -= 1

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _visit_comprehension

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.names.add(alias.asname or alias.name.split(".")[0])

    visit_ImportFrom = visit_Import

    def _visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.names.add(node.name)
        for part in node.decorator_list:  # evaluated in module scope; the body is not
            self.visit(part)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def visit_Lambda(self, node: ast.Lambda) -> None:
        pass

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.names.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.names.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.names.add(node.rest)
        self.generic_visit(node)
