"""configurable-agents ``edges`` (linear ``{from, to}`` and conditional
``{from, routes: [{condition: {logic}, to}]}``) as promptab's node order and
node ``routes``.

The nodes run in an order where every edge goes forward (a topological
order of the graph, ties kept in the file's order); a node whose way on is
not simply the next node gets promptab ``routes`` saying where it goes.
configurable-agents evaluates routes in order, the first true condition
wins, and the default route (``logic: default``) is taken when none is; a
file of linear edges only gets no routes at all. Edges that go back (a
loop), ``loop`` and ``parallel`` edges, fork edges (``to:`` a list), routes
from START and a second edge from one node are located errors.
"""

from __future__ import annotations

from typing import Any

from . import ca_conditions, ca_templates
from .ca_parts import Loc, Located

START, END = "START", "END"


class Flow:
    """Node indexes (in the file) in run order, and per node index the
    promptab routes it needs, each with the place in the file it comes from."""

    def __init__(self, order: list[int], routes: dict[int, list[tuple[dict[str, Any], Loc]]]) -> None:
        self.order, self.routes = order, routes


def flow(edges: Any, by_id: dict[str, int], fields: dict[str, str]) -> Flow:
    """``fields``: state field -> type. Raises :class:`Located` for what
    promptab does not run."""
    if not isinstance(edges, list) or not edges:
        raise Located("edges must be a non-empty list of {from, to} or {from, routes}", ("edges",))
    ways: dict[str, list[tuple[str | None, str, Loc]]] = {}
    """node -> (promptab condition, None: the default; target; where), in order."""
    conditional = False
    for index, edge in enumerate(edges):
        loc = ("edges", index)
        if not isinstance(edge, dict) or "from" not in edge:
            raise Located("each edge needs 'from:' and 'to:' (or 'routes:')", loc)
        for kind in ("loop", "parallel"):
            if edge.get(kind) is not None:
                raise Located(f"'{kind}' edges are not supported by promptab: linear edges (from, to) and "
                              "routes run", loc + (kind,), "test a flow without it")
        source = str(edge["from"])
        _known(source, by_id, loc + ("from",))
        if source == END:
            raise Located("an edge cannot start at END", loc + ("from",))
        if source in ways:
            raise Located(f"a second edge from {source!r}: promptab runs one way on from each node "
                          "(use routes to choose)", loc)
        if edge.get("routes") is not None:
            if edge.get("to") is not None:
                raise Located("an edge has either 'to:' or 'routes:', not both", loc)
            if source == START:
                raise Located("routes from START are not supported by promptab: START leads to one node",
                              loc + ("routes",))
            ways[source] = _routes(edge["routes"], by_id, fields, loc + ("routes",))
            conditional = True
            continue
        to = edge.get("to")
        if isinstance(to, list):
            raise Located("fork edges (to: a list) are not supported by promptab", loc + ("to",))
        if not isinstance(to, str):
            raise Located("an edge needs 'to:' (or 'routes:')", loc)
        _known(to, by_id, loc + ("to",))
        ways[source] = [(None, to, loc + ("to",))]
    if START not in ways:
        raise Located("no edge from START: add {from: START, to: <first node>}", ("edges",))
    order = _order(ways, by_id)
    routes: dict[int, list[tuple[dict[str, Any], Loc]]] = {}
    if conditional:
        names = [name for name, _ in sorted(by_id.items(), key=lambda item: order.index(item[1]))]
        for position, name in enumerate(names):
            after = names[position + 1] if position + 1 < len(names) else END
            way = ways[name]
            if len(way) == 1 and way[0][1] == after:
                continue  # simply on to the next node
            items = [({"when": when, "to": to} if when is not None else {"to": to}, where) for when, to, where in way]
            routes[by_id[name]] = items
    return Flow(order, routes)


def _known(name: str, by_id: dict[str, int], loc: Loc) -> None:
    if name in (START, END) or name in by_id:
        return
    close = ca_templates.difflib.get_close_matches(name, list(by_id) + [START, END], n=1)
    what = "route to" if "routes" in loc else f"edge {loc[-1]}"
    raise Located(f"{what} unknown node {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""), loc)


def _routes(raw: Any, by_id: dict[str, int], fields: dict[str, str], loc: Loc) -> list[tuple[str | None, str, Loc]]:
    """configurable-agents' routes, the default last (the last one marked
    ``default`` wins, as there)."""
    if not isinstance(raw, list) or not raw:
        raise Located("routes must be a non-empty list of {condition: {logic: ...}, to: <node>}", loc)
    out: list[tuple[str | None, str, Loc]] = []
    default: tuple[str | None, str, Loc] | None = None
    for index, route in enumerate(raw):
        where = loc + (index,)
        condition = route.get("condition") if isinstance(route, dict) else None
        logic = condition.get("logic") if isinstance(condition, dict) else None
        if not isinstance(logic, str) or not isinstance(route.get("to"), str):
            raise Located("a route needs 'condition: {logic: ...}' and 'to: <node>' "
                          "(logic: default for the fallback)", where)
        _known(route["to"], by_id, where + ("to",))
        if route["to"] == START:
            raise Located("a route cannot go to START", where + ("to",))
        try:
            when = ca_conditions.translate(logic, fields)
        except ca_conditions.BadCondition as exc:
            raise Located(str(exc), where + ("condition", "logic")) from None
        if when is None:
            default = (None, route["to"], where + ("to",))
        else:
            out.append((when, route["to"], where + ("to",)))
    if default is None:
        raise Located("routes must include a default route ({condition: {logic: default}, to: <node>}), "
                      "taken when no condition holds", loc)
    return out + [default]


def _order(ways: dict[str, list[tuple[str | None, str, Loc]]], by_id: dict[str, int]) -> list[int]:
    """Node indexes in an order where every edge goes forward; every node
    reachable from START, every one with a way on; no loops."""
    state: dict[str, str] = {}  # "open" while its successors are walked, then "done"
    finished: list[str] = []

    def walk(name: str) -> None:
        state[name] = "open"
        if name != START and name not in ways:
            raise Located(f"no edge leads on from {name!r} to END", ("nodes", by_id[name]),
                          f"add {{from: {name}, to: END}}")
        for _, target, where in ways.get(name, ()):
            if target == END:
                continue
            if state.get(target) == "open":
                raise Located(f"the edge from {name!r} to {target!r} goes back to an earlier node (a loop): "
                              "not supported by promptab", where, "test a flow without the loop")
            if target not in state:
                walk(target)
        state[name] = "done"
        finished.append(name)

    walk(START)
    missing = [n for n in by_id if n not in state]
    if missing:
        raise Located(f"node {missing[0]!r} is not on the path from START to END", ("nodes", by_id[missing[0]]))
    # reverse post-order is a topological order; rebuild it stably in the file's order
    depth: dict[str, int] = {}
    for name in finished:  # successors finish first
        depth[name] = 1 + max((depth[t] for _, t, _ in ways.get(name, ()) if t != END), default=0)
    names = sorted(by_id, key=lambda n: (-depth[n], by_id[n]))
    return [by_id[n] for n in names]
