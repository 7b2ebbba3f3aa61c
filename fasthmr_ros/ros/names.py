"""ROS 2 names: node names, namespaces, topic expansion and remapping rules.

Follows the ROS 2 design article "Topic and Service name mapping to DDS" and the remapping
rules of ``rcl``: relative names are expanded against the node's namespace, ``~`` stands for
``<namespace>/<node name>``, and a remap rule ``FROM:=TO`` applies when the expanded ``FROM``
equals the expanded name. On DDS, a topic ``/a/b`` travels as ``rt/a/b``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

# A node name, and every part of a namespace or topic name between slashes.
_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Prefix of ROS topics on DDS.
DDS_TOPIC_PREFIX = "rt"


class InvalidNameError(ValueError):
    """A node name, namespace, topic name or remap rule that ROS 2 would reject."""


def validate_node_name(name: str) -> str:
    """Return ``name`` if it is a valid ROS 2 node name, else raise :class:`InvalidNameError`."""
    if not _TOKEN.match(name or ""):
        raise InvalidNameError(
            f"invalid node name {name!r}: use letters, digits and underscores, not starting "
            "with a digit"
        )
    return name


def normalize_namespace(namespace: str) -> str:
    """Return the absolute form of a namespace (``""`` and ``"/"`` both mean the root)."""
    namespace = (namespace or "/").strip()
    if not namespace.startswith("/"):
        namespace = "/" + namespace
    if namespace != "/":
        namespace = namespace.rstrip("/")
        _check_tokens(namespace[1:].split("/"), f"namespace {namespace!r}")
    return namespace


def _check_tokens(tokens: Iterable[str], what: str) -> None:
    for token in tokens:
        if not _TOKEN.match(token):
            raise InvalidNameError(
                f"invalid {what}: {token!r} is not a name token (letters, digits and "
                "underscores, not starting with a digit; no empty parts such as '//')"
            )


def expand_topic_name(name: str, node_name: str, namespace: str) -> str:
    """Expand a topic name to its fully qualified form.

    ``image`` in namespace ``/cam`` becomes ``/cam/image``; ``~/debug`` of node ``n`` in ``/cam``
    becomes ``/cam/n/debug``; absolute names are only validated.
    """
    if not name:
        raise InvalidNameError("topic name must not be empty")
    namespace = normalize_namespace(namespace)
    base = namespace.rstrip("/")
    if name == "~":
        expanded = f"{base}/{node_name}"
    elif name.startswith("~/"):
        expanded = f"{base}/{node_name}/{name[2:]}"
    elif name.startswith("/"):
        expanded = name
    else:
        expanded = f"{base}/{name}"
    if expanded.endswith("/") and expanded != "/":
        raise InvalidNameError(f"topic name {name!r} must not end with '/'")
    _check_tokens(expanded[1:].split("/"), f"topic name {name!r}")
    return expanded


def dds_topic_name(fully_qualified: str) -> str:
    """Return the DDS topic of a ROS topic: ``/a/b`` -> ``rt/a/b``."""
    if not fully_qualified.startswith("/"):
        raise InvalidNameError(f"expected a fully qualified topic name, got {fully_qualified!r}")
    return DDS_TOPIC_PREFIX + fully_qualified


@dataclass(frozen=True)
class RemapRule:
    """One ``[node:]FROM:=TO`` rule; ``node`` restricts it to one node name."""

    source: str
    target: str
    node: str | None = None


def parse_remap(rule: str) -> RemapRule:
    """Parse ``FROM:=TO`` or ``node:FROM:=TO`` (the ``--remap`` / ``-r`` syntax of ROS 2)."""
    if ":=" not in rule:
        raise InvalidNameError(f"remap rule {rule!r} must look like FROM:=TO")
    source, target = rule.split(":=", 1)
    node = None
    if ":" in source:
        node, source = source.split(":", 1)
        validate_node_name(node)
    if not source or not target:
        raise InvalidNameError(f"remap rule {rule!r} needs both FROM and TO")
    return RemapRule(source=source, target=target, node=node)


@dataclass
class NameResolver:
    """Resolve a node's topic names: expansion against its namespace, then remapping.

    The special rules ``__ns:=/x`` and ``__node:=name`` (or ``__name:=``) change the node's
    namespace and name, as on the ROS 2 command line.
    """

    node_name: str
    namespace: str = "/"
    remaps: list[RemapRule] = field(default_factory=list)

    def __post_init__(self) -> None:
        rules = []
        for rule in self.remaps:
            if rule.node is not None and rule.node != self.node_name:
                continue
            if rule.source in ("__node", "__name"):
                self.node_name = rule.target
            elif rule.source == "__ns":
                self.namespace = rule.target
            else:
                rules.append(rule)
        validate_node_name(self.node_name)
        self.namespace = normalize_namespace(self.namespace)
        self.remaps = rules
        # Validate every rule now so a bad --remap fails at start-up, not at first use.
        self._expanded = [
            (
                expand_topic_name(r.source, self.node_name, self.namespace),
                expand_topic_name(r.target, self.node_name, self.namespace),
            )
            for r in rules
        ]

    @classmethod
    def from_rules(cls, node_name: str, namespace: str, rules: Iterable[str]) -> NameResolver:
        """Build from ``FROM:=TO`` strings."""
        return cls(node_name, namespace, [parse_remap(r) for r in rules])

    @property
    def fully_qualified_node_name(self) -> str:
        """Return ``/<namespace>/<node name>``."""
        return f"{self.namespace.rstrip('/')}/{self.node_name}"

    def resolve(self, name: str) -> str:
        """Return the fully qualified, remapped topic name for ``name``."""
        expanded = expand_topic_name(name, self.node_name, self.namespace)
        for source, target in self._expanded:
            if source == expanded:
                return target
        return expanded
