"""Finding the node at a document path, in time proportional to the path's length. Pure.

A problem is reported at the place its path names. Walking a mapping's entries to find one key
costs as much as the mapping is long, so locating one problem per entry of a 20,000-route
mapping that way is quadratic. Here each mapping is indexed by key once, on first use, and every
later step is one dictionary lookup. `entries_indexed` and `steps` count the work done.
"""

from __future__ import annotations

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Path = tuple[str | int, ...]
_Entry = tuple[Node, Node]  # (key node, value node); for a sequence item, the item twice


class NodeIndex:
    """Looks up nodes by document path in one node tree."""

    def __init__(self, root: Node) -> None:
        self.root = root
        self._mappings: dict[int, dict[str, _Entry]] = {}
        self.entries_indexed = 0  # mapping entries read to build the index, each at most once
        self.steps = 0  # path steps followed

    def locate(self, path: Path) -> tuple[Node, Node | None]:
        """Follow `path` from the root.

        Returns (anchor, value): `value` is the node at `path` when every step exists, else None;
        `anchor` is the best node to point at: the key node of the last step that was found (or
        the value node itself when the whole path resolved).
        """
        anchor: Node = self.root
        node: Node = self.root
        for step in path:
            found = self.child(node, step)
            if found is None:
                return anchor, None
            anchor, node = found
        return node, node

    def key_node(self, path: Path) -> Node | None:
        """The key node of the last step of `path` when it exists (a sequence item is its own)."""
        if not path:
            return None
        _, parent = self.locate(path[:-1])
        found = self.child(parent, path[-1]) if parent is not None else None
        return found[0] if found else None

    def child(self, node: Node, step: str | int) -> _Entry | None:
        """The entry `step` names under `node`: a mapping key, or a sequence index."""
        self.steps += 1
        if isinstance(node, MappingNode):
            entries = self._mappings.get(id(node))
            if entries is None:
                entries = self._index(node)
            return entries.get(step) if isinstance(step, str) else None
        if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            item: Node = node.value[step]
            return item, item
        return None

    def _index(self, node: MappingNode) -> dict[str, _Entry]:
        entries: dict[str, _Entry] = {}
        for key, value in node.value:
            if isinstance(key, ScalarNode):
                entries.setdefault(key.value, (key, value))  # the first of duplicates, as written
        self.entries_indexed += len(node.value)
        self._mappings[id(node)] = entries
        return entries
