"""Run the hand or body mesh node on the plain DDS transport (no ROS install needed)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fasthmr_ros.ros.dds import DdsTransport
from fasthmr_ros.ros.hand_node import NODE_NAME
from fasthmr_ros.ros.names import NameResolver
from fasthmr_ros.ros.node_configurations import node_configuration
from fasthmr_ros.ros.parameters import (
    HAND_NODE_PARAMETERS,
    ParameterError,
    ParameterSet,
    ParameterSpec,
    load_parameter_file,
    parse_override,
)

log = logging.getLogger(__name__)


def resolve_parameters(
    fully_qualified_node_name: str,
    params_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    logger: Any = log,
    specs: Iterable[ParameterSpec] = HAND_NODE_PARAMETERS,
) -> ParameterSet:
    """Combine defaults, parameter files and ``NAME=VALUE`` overrides, in that order.

    Unknown names in a parameter file are ignored with a warning (ROS does the same for
    undeclared parameters); an unknown or invalid override is an error.

    Raises:
        ParameterError: for an invalid file, value or override.

    """
    params = ParameterSet(specs)
    values: dict[str, Any] = {}
    for path in params_files:
        for name, value in load_parameter_file(path, fully_qualified_node_name).items():
            if name in params.specs:
                values[name] = value
            elif name != "use_sim_time":
                logger.warning(f"{path}: ignoring unknown parameter {name!r}")
    for text in overrides:
        name, value = parse_override(text)
        params.spec(name)
        values[name] = value
    params.initialize(values)
    return params


def run_hand_node(
    params_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    remaps: Iterable[str] = (),
    node_name: str = NODE_NAME,
    namespace: str = "/",
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    install_signal_handlers: bool = True,
) -> Mapping[str, Any]:
    """Run the hand mesh node over DDS (see :func:`run_node`)."""
    return run_node("hands", params_files, overrides, remaps, node_name, namespace,
                    duration_s, stop, install_signal_handlers)


def run_node(
    kind: str,
    params_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    remaps: Iterable[str] = (),
    node_name: str | None = None,
    namespace: str = "/",
    duration_s: float | None = None,
    stop: threading.Event | None = None,
    install_signal_handlers: bool = True,
) -> Mapping[str, Any]:
    """Run node ``kind`` (hands, bodies) over DDS until ``stop``, a signal or time is up.

    Returns:
        The final statistics (frames received, processed, dropped, rejected).

    """
    configuration = node_configuration(kind)
    node_name = node_name or configuration.node_name
    remaps = list(remaps)
    resolver = NameResolver.from_rules(node_name, namespace, remaps)
    params = resolve_parameters(resolver.fully_qualified_node_name, params_files, overrides,
                                specs=configuration.parameters)
    if params["lifecycle"]:
        raise ParameterError("parameter 'lifecycle' needs the rclpy transport (lifecycle "
                             "services are rclpy's): run with --transport rclpy")
    stop = stop or threading.Event()
    with contextlib.ExitStack() as cleanup:
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.signal(sig, lambda *_: stop.set())
                if previous is not None:  # None: a handler Python did not install
                    cleanup.callback(signal.signal, sig, previous)
        transport = cleanup.enter_context(DdsTransport(node_name, namespace, remaps))
        node = configuration.create(transport, params)
        node.start()
        transport.logger.info(
            f"running on DDS domain {transport.domain_id} as "
            f"{transport.resolver.fully_qualified_node_name}; image topic "
            f"{transport.resolve('image')}"
        )
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            node.spin_once(0.1)
        node.publish_diagnostics()
        node.shutdown()
        snapshot = node.stats.snapshot(node.clock())
        return {
            "frames_received": snapshot.frames_received,
            "frames_processed": snapshot.frames_processed,
            "frames_dropped": snapshot.frames_dropped,
            "messages_rejected": snapshot.messages_rejected,
        }
