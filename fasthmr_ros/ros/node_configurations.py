"""The package's nodes by name: ``hands`` and ``bodies``, both on the one mesh node core.

Each entry gives the default node name, the parameter declarations and the factory building
the core node (model, pipeline, detector) from its parameters. The DDS runner
(``fasthmr node hands|bodies``) and the rclpy runner (``ros2 run fasthmr_ros
hand_mesh_node|body_mesh_node``) both look nodes up here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fasthmr_ros.ros.parameters import BODY_NODE_PARAMETERS, HAND_NODE_PARAMETERS, ParameterSpec


@dataclass(frozen=True)
class NodeConfiguration:
    """How to declare and build one of the package's nodes."""

    name: str
    node_name: str
    parameters: tuple[ParameterSpec, ...]
    create: Callable[[Any, Any], Any]  # (transport, parameters) -> MeshNode, not started


def _create_hand_node(transport: Any, params: Any) -> Any:
    from fasthmr_ros.ros.hand_setup import create_hand_node

    return create_hand_node(transport, params)


def _create_body_node(transport: Any, params: Any) -> Any:
    from fasthmr_ros.ros.body_node import create_body_node

    return create_body_node(transport, params)


NODES: dict[str, NodeConfiguration] = {
    "hands": NodeConfiguration("hands", "hand_mesh_node", HAND_NODE_PARAMETERS,
                               _create_hand_node),
    "bodies": NodeConfiguration("bodies", "body_mesh_node", BODY_NODE_PARAMETERS,
                                _create_body_node),
}


def node_configuration(name: str) -> NodeConfiguration:
    """The configuration of node ``name`` (``hands`` or ``bodies``)."""
    try:
        return NODES[name]
    except KeyError:
        raise ValueError(f"unknown node {name!r}; choose one of {', '.join(NODES)}") from None
