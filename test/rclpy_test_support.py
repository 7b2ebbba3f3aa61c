"""Helpers for the tests that run real ROS 2 (rclpy from scripts/setup-ros.sh's .venv-ros).

Where ``FASTHMR_REQUIRE_RCLPY=1`` (set by ``.ci/run`` for its ``.venv-ros`` run), a missing rclpy
or missing generated messages fail these tests: CI builds ``.venv-ros`` and must run them.
Elsewhere (the plain ``.venv``) they are skipped with the command that enables them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ros_test_support import Collector, random_domain_id, write_loopback_config

ROOT = Path(__file__).resolve().parents[1]
SETUP_HINT = "build the ROS 2 environment with scripts/setup-ros.sh and run .venv-ros/bin/pytest"


def require_rclpy() -> None:
    """Fail (where required) or skip unless rclpy and this package's messages import."""
    try:
        import rclpy  # noqa: F401
        import rclpy.lifecycle  # noqa: F401
        from fasthmr_ros.msg import HandMeshArray  # noqa: F401
    except ImportError as exc:
        text = f"real ROS 2 is not available ({exc}): {SETUP_HINT}"
        if os.environ.get("FASTHMR_REQUIRE_RCLPY") == "1":
            pytest.fail("the rclpy tests are required here, but " + text, pytrace=False)
        pytest.skip(text, allow_module_level=True)


@pytest.fixture(scope="session")
def rclpy_available() -> None:
    """Use in ``pytestmark``: see :func:`require_rclpy`."""
    require_rclpy()


def ros_environment(folder: Path) -> dict[str, str]:
    """Environment for ROS processes of one test module: own domain, logs in ``folder``."""
    env = dict(os.environ)
    env.update({
        "ROS_DOMAIN_ID": str(random_domain_id()),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(folder / "ros_log"),
        "CYCLONEDDS_URI": "file://" + str(write_loopback_config(folder)),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


class RosClient:
    """An rclpy node of the test process, spun by an executor on a background thread."""

    def __init__(self, env: dict[str, str], name: str = "test_client") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOG_DIR"):
            os.environ[key] = env[key]
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.collector = Collector()
        #: Messages received per topic (rclpy message objects).
        self.received: dict[str, list[Any]] = self.collector.messages
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.1)
        except (ExternalShutdownException, Exception):  # context shut down under the spin
            return

    def subscribe(self, topic: str, msg_type: Any, qos: Any) -> Any:
        """Collect every message of ``topic`` in ``received[topic]``."""
        return self.node.create_subscription(msg_type, topic, self.collector.callback(topic),
                                             qos)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds (checked on every message) or time is up."""
        return self.collector.wait_for(predicate, timeout)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate()`` (graph queries) until it holds or time is up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.1)
        return predicate()

    def call(self, client: Any, request: Any, timeout: float = 20.0) -> Any:
        """Call a service and return its response."""
        assert client.wait_for_service(timeout_sec=timeout), f"no service {client.srv_name}"
        return self.result(client.call_async(request), timeout)

    @staticmethod
    def result(future: Any, timeout: float = 20.0) -> Any:
        """Wait for a future completed by the spin thread."""
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError("no response in time")
            time.sleep(0.02)
        return future.result()

    def close(self) -> None:
        """Destroy the node and shut the context down."""
        self.context.try_shutdown()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()


class ImageStream:
    """Publishes ``sensor_msgs/Image`` at a fixed rate from a thread (sensor-data QoS)."""

    def __init__(self, client: RosClient, topic: str, frames: np.ndarray,
                 frame_id: str = "camera_optical_frame", rate_hz: float = 15.0) -> None:
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.client = client
        self.image_type = Image
        self.publisher = client.node.create_publisher(Image, topic, qos_profile_sensor_data)
        self.frames = frames
        self.frame_id = frame_id
        self.period = 1.0 / rate_hz
        self.sent: list[int] = []
        self.bad: list[int] = []
        self.bad_at: set[int] = set()
        #: Called as ``on_sent(index, stamp_ns)`` after each image (e.g. its detections).
        self.on_sent: Callable[[int, int], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def image(self, index: int, stamp_ns: int) -> Any:
        """Build the ``Image`` of frame ``index`` (rgb8)."""
        frame = self.frames[index % len(self.frames)]
        msg = self.image_type()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = self.frame_id
        msg.height, msg.width = frame.shape[:2]
        msg.encoding = "rgb8"
        msg.step = frame.shape[1] * 3
        msg.data = frame.tobytes()
        return msg

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            stamp = time.time_ns()
            msg = self.image(index, stamp)
            if index in self.bad_at:
                msg.step = 7  # a malformed message in the middle of the stream
                self.bad.append(stamp)
            else:
                self.sent.append(stamp)
            self.publisher.publish(msg)
            if self.on_sent is not None:
                self.on_sent(index, stamp)
            index += 1
            self._stop.wait(self.period)

    def start(self) -> ImageStream:
        """Start publishing."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


def start_mesh_node(env: dict[str, str], kind: str, transport: str, *extra: str,
                    namespace: str = "/") -> subprocess.Popen:
    """Start ``fasthmr node KIND`` (``hands`` or ``bodies``, this checkout) in its own process."""
    return subprocess.Popen(
        [sys.executable, "-m", "fasthmr_ros", "node", kind, "--transport", transport,
         "--namespace", namespace, "--param", "diagnostics_period=0.5", *extra],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def start_node(env: dict[str, str], checkpoint: Path, transport: str, *extra: str,
               namespace: str = "/") -> subprocess.Popen:
    """Start ``fasthmr node hands`` on ``checkpoint``, each image one hand (full_frame)."""
    return start_mesh_node(env, "hands", transport, "--param", f"checkpoint={checkpoint}",
                           "--param", "detector=full_frame", *extra, namespace=namespace)


def stop_node(process: subprocess.Popen, sig: int = signal.SIGINT,
              timeout: float = 20.0) -> tuple[int, str]:
    """Stop a node process with ``sig`` (SIGKILL after ``timeout``); return code and output."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        return -9, output or ""
    return process.returncode, output or ""


@contextmanager
def running_node(env: dict[str, str], checkpoint: Path, transport: str,
                 *extra: str) -> Iterator[subprocess.Popen]:
    """A node process for the ``with`` block, stopped with SIGINT afterwards."""
    process = start_node(env, checkpoint, transport, *extra)
    try:
        yield process
    finally:
        stop_node(process)


def stamp_ns(header: Any) -> int:
    """Nanoseconds of an rclpy ``std_msgs/Header`` stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
