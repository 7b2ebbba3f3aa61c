"""The mesh node core: one code path for the hand and the body node, any transport.

A :class:`NodeKind` configures it (``fasthmr_ros.ros.hand_node.HAND_NODE``,
``fasthmr_ros.ros.body_node.BODY_NODE``): the output topics and message type, the message,
marker, TF and debug-image builders, the per-image limit parameter and the external
detection topic (``hand_detections``, ``person_detections``). Everything else (decoding,
camera intrinsics, latest-frame scheduling, stamp pairing, tracking and smoothing,
diagnostics, run-time parameters, warnings) is shared.

Subscriptions (relative to the node's namespace):
    ``image`` (``sensor_msgs/Image``) or ``image/compressed`` (``CompressedImage``; remaps of
    ``image`` apply to it, as with ``image_transport``),
    ``camera_info`` (optional), the kind's detections topic (``detector: external`` only).
Publications (``<out>`` is ``hands`` or ``bodies``):
    ``<out>`` (``HandMeshArray`` / ``BodyMeshArray``), ``<out>/markers`` (``MarkerArray``),
    ``<out>/topology`` (``MeshTopology``, transient local), ``<out>/debug_image`` (optional),
    ``/tf`` (optional), ``/diagnostics``.

Threading: subscription callbacks only decode headers and store the newest frame (the latest
frame wins; replaced frames are counted as dropped); :meth:`MeshNode.spin_once`, called in
a loop by the transport's runner, does the work.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from fasthmr_ros.models.mesh_model import MeshModelInfo
from fasthmr_ros.pipeline.body_pipeline import result_track_ids
from fasthmr_ros.pipeline.camera import resolve_intrinsics
from fasthmr_ros.pipeline.results import CameraIntrinsics
from fasthmr_ros.pipeline.smoothing import OneEuroParameters
from fasthmr_ros.pipeline.temporal import MeshStream
from fasthmr_ros.pipeline.tracking import Detection, Tracker
from fasthmr_ros.ros import messages
from fasthmr_ros.ros.camera_info import (
    CAMERA_INFO,
    CameraInfoError,
    IntrinsicsByStamp,
    intrinsics_from_camera_info,
)
from fasthmr_ros.ros.diagnostics import (
    DIAGNOSTIC_ARRAY,
    DIAGNOSTICS_TOPIC,
    NodeStatistics,
    diagnostic_array,
)
from fasthmr_ros.ros.image_codec import (
    COMPRESSED_IMAGE,
    IMAGE,
    ImageDecodeError,
    UnsupportedEncodingError,
    decode_compressed_image,
    decode_image,
    encode_image,
)
from fasthmr_ros.ros.markers import MARKER_ARRAY, MarkerBuilder, PackedMarkerArray
from fasthmr_ros.ros.mesh_messages import MESH_TOPOLOGY, topology_message
from fasthmr_ros.ros.parameters import ParameterError, ParameterSet
from fasthmr_ros.ros.qos import DEFAULT, LATCHED, SENSOR_DATA, TF, image_qos
from fasthmr_ros.ros.tf_frames import TF_MESSAGE, TF_TOPIC
from fasthmr_ros.ros.transport import RawPublisher, Transport

#: Distinct warning texts remembered for throttling and one-time warnings.
MAX_WARNING_KEYS = 256

#: Input topic names, relative to the node's namespace.
IMAGE_TOPIC = "image"
COMPRESSED_SUFFIX = "/compressed"
CAMERA_INFO_TOPIC = "camera_info"


class MeshPipeline(Protocol):
    """What the node needs from a mesh pipeline (hands or bodies)."""

    def process(
        self,
        image_rgb: np.ndarray,
        boxes: list[Any],
        intrinsics: CameraIntrinsics | None = None,
    ) -> list[Any]:
        """Reconstruct what is in ``boxes``.

        One result per box, or results naming their box in ``extras["person_index"]``.
        """


class BoxDetector(Protocol):
    """A source of boxes (hands: ``fasthmr_ros.pipeline.box_sources``; people)."""

    def detect(self, image_rgb: np.ndarray) -> list[Any]:
        """Return what was found in the image."""


@dataclass(frozen=True)
class NodeKind:
    """What makes a mesh node a hand node or a body node.

    Builders take the package typestore ``store`` last. ``array_message(header, results,
    store, num_vertices)`` builds the output message; ``result_ids(results)`` the message id of
    each result; ``transforms(header, results, ids, prefix, store)`` the ``TFMessage``;
    ``draw(bgr, results, model, camera)`` the debug image; ``parse_detections(msg, store)``
    returns ``(boxes, problems)`` for an external detection message.
    """

    name: str  # "hand" or "body": logs and diagnostics
    node_name: str
    output: str  # output topic; markers, topology and debug image live under it
    output_msgtype: str
    array_message: Callable[..., Any]
    result_ids: Callable[[Sequence[Any]], list[str]]
    transforms: Callable[..., Any]
    draw: Callable[..., np.ndarray]
    max_parameter: str  # the per-image limit parameter (max_hands / max_people)
    detections_topic: str = ""
    detections_msgtype: str = ""
    parse_detections: Callable[..., tuple[list[Any], list[str]]] | None = None

    @property
    def markers_topic(self) -> str:
        """``<output>/markers``."""
        return f"{self.output}/markers"

    @property
    def topology_topic(self) -> str:
        """``<output>/topology`` (transient local)."""
        return f"{self.output}/topology"

    @property
    def debug_image_topic(self) -> str:
        """``<output>/debug_image``."""
        return f"{self.output}/debug_image"


@dataclass
class Frame:
    """A received image waiting to be processed."""

    message: Any
    msgtype: str
    received: float
    detections: list[Detection] | None = None

    @property
    def stamp_ns(self) -> int:
        """Return the image stamp in nanoseconds."""
        return messages.stamp_to_ns(self.message.header.stamp)


@dataclass
class FrameTimings:
    """Seconds spent per stage of one frame."""

    decode: float = 0.0
    detect: float = 0.0
    infer: float = 0.0
    convert: float = 0.0
    serialize: float = 0.0
    publish: float = 0.0
    #: CPU seconds of this thread in decode, convert, serialize and publish (unlike the wall
    #: times above, not inflated when other processes take the CPU).
    overhead_cpu: float = 0.0
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        """Return the node's own cost: everything except detection and inference."""
        return self.decode + self.convert + self.serialize + self.publish


class LatestFrameSlot:
    """Holds at most one frame: a new frame replaces an unprocessed one (counted as dropped)."""

    def __init__(self, on_drop: Callable[[], None] | None = None) -> None:
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self._closed = False

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; return whether an unprocessed frame was replaced."""
        with self._cond:
            replaced = self._frame is not None
            self._frame = frame
            self._cond.notify()
        if replaced and self._on_drop is not None:
            self._on_drop()
        return replaced

    def take(self, timeout: float | None = None) -> Frame | None:
        """Return and clear the stored frame, waiting up to ``timeout`` seconds for one."""
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        """Wake up waiting takers for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class StampPairing:
    """Pair images with the detections carrying the same stamp (exact time synchronisation).

    Images still unpaired when ``capacity`` newer ones arrived are given up (``on_drop``).
    """

    def __init__(self, capacity: int = 16, on_drop: Callable[[], None] | None = None) -> None:
        self._images: OrderedDict[int, Frame] = OrderedDict()
        self._detections: OrderedDict[int, list[Detection]] = OrderedDict()
        self._capacity = capacity
        self._on_drop = on_drop
        self._lock = threading.Lock()

    def add_image(self, frame: Frame) -> Frame | None:
        """Add an image; return it with its detections when they already arrived."""
        with self._lock:
            boxes = self._detections.pop(frame.stamp_ns, None)
            if boxes is None:
                if self._store(self._images, frame.stamp_ns, frame) and self._on_drop:
                    self._on_drop()
                return None
            frame.detections = boxes
            return frame

    def add_detections(self, stamp_ns: int, boxes: list[Detection]) -> Frame | None:
        """Add detections; return their image when it already arrived."""
        with self._lock:
            frame = self._images.pop(stamp_ns, None)
            if frame is None:
                self._store(self._detections, stamp_ns, boxes)
                return None
            frame.detections = boxes
            return frame

    def _store(self, table: OrderedDict, stamp_ns: int, item: Any) -> int:
        """Add ``item``; return how many old entries were evicted."""
        table[stamp_ns] = item
        evicted = 0
        while len(table) > self._capacity:
            table.popitem(last=False)
            evicted += 1
        return evicted


def select_boxes(
    boxes: Sequence[Detection], score_threshold: float, max_count: int
) -> list[Detection]:
    """Keep the ``max_count`` highest-scoring boxes whose score reaches ``score_threshold``."""
    kept = [b for b in boxes if b.score >= score_threshold]
    kept.sort(key=lambda b: b.score, reverse=True)
    return kept[:max_count]


class MeshNode:
    """A mesh node's logic over any :class:`~fasthmr_ros.ros.transport.Transport`.

    Args:
        transport: publishers, subscriptions, logger and clock.
        parameters: validated parameter values (the kind's parameter set).
        kind: hand or body configuration.
        pipeline: the mesh pipeline (image + boxes -> results).
        model: the pipeline's mesh model (``pipeline.info``): its topology is published and
            its triangles (right-hand winding) drawn in markers and debug images.
        detector: the box source; ``None`` when ``detector`` is ``external``.
        clock: monotonic clock in seconds (for rates, latency and drops).

    """

    def __init__(
        self,
        transport: Transport,
        parameters: ParameterSet,
        kind: NodeKind,
        pipeline: MeshPipeline,
        model: MeshModelInfo,
        detector: BoxDetector | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.transport = transport
        self.params = parameters
        self.pipeline = pipeline
        if not isinstance(model, MeshModelInfo):
            raise TypeError(f"model must be a MeshModelInfo (pipeline.info), got "
                            f"{type(model).__name__}")
        self.model = model
        self.faces = model.faces
        self.detector = detector
        self.clock = clock
        self.log = transport.logger
        self.store = messages.typestore()
        self.stats = NodeStatistics()
        self.slot = LatestFrameSlot(on_drop=self.stats.dropped)
        self.pairing = StampPairing(on_drop=self.stats.dropped)
        self.intrinsics = IntrinsicsByStamp()
        self.markers = MarkerBuilder(
            self.faces,
            bones=np.asarray(model.bones, dtype=np.int64).reshape(-1, 2),
            prefix=kind.name,
            lifetime_s=parameters["marker_lifetime"],
            mesh=parameters["marker_mesh"],
            store=self.store,
        )
        self.stream = MeshStream(
            tracking=parameters["tracking"],
            smoothing=parameters["smoothing"],
            tracker=Tracker(max_misses=parameters["tracking_max_misses"]),
            translation=OneEuroParameters(
                min_cutoff=parameters["smoothing_translation_min_cutoff"],
                beta=parameters["smoothing_translation_beta"],
            ),
            articulation=OneEuroParameters(
                min_cutoff=parameters["smoothing_min_cutoff"], beta=parameters["smoothing_beta"]
            ),
        )
        self.last_timings = FrameTimings()
        self._warned: set[str] = set()
        self._warned_at: dict[str, float] = {}
        self._last_diagnostics = -float("inf")
        self._publishers: dict[str, RawPublisher] = {}
        self._lock = threading.Lock()
        if parameters["detector"] == "external":
            if kind.parse_detections is None:
                raise ValueError(f"the {kind.name} node has no external detection topic")
            if detector is not None:
                raise ValueError(
                    "detector 'external' takes boxes from a topic: pass detector=None"
                )
        elif detector is None:
            raise ValueError(f"detector {parameters['detector']!r} needs a detector object")

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        """Create publishers and subscriptions and publish the mesh topology."""
        t = self.transport
        params = self.params
        self._publishers = {
            self.kind.output: t.create_publisher(self.kind.output, self.kind.output_msgtype,
                                                 DEFAULT),
            "markers": t.create_publisher(self.kind.markers_topic, MARKER_ARRAY, DEFAULT),
            "topology": t.create_publisher(self.kind.topology_topic, MESH_TOPOLOGY, LATCHED),
            "debug_image": t.create_publisher(self.kind.debug_image_topic, IMAGE, SENSOR_DATA),
            "tf": t.create_publisher(TF_TOPIC, TF_MESSAGE, TF),
            "diagnostics": t.create_publisher(DIAGNOSTICS_TOPIC, DIAGNOSTIC_ARRAY, DEFAULT),
        }
        qos = image_qos(params["image_reliability"])
        if params["image_transport"] == "compressed":
            # As image_transport does: remaps apply to the base topic, "compressed" is appended.
            t.create_subscription(t.resolve(IMAGE_TOPIC) + COMPRESSED_SUFFIX, COMPRESSED_IMAGE,
                                  qos, self.on_compressed_image)
        else:
            t.create_subscription(IMAGE_TOPIC, IMAGE, qos, self.on_image)
        if params["use_camera_info"]:
            t.create_subscription(CAMERA_INFO_TOPIC, CAMERA_INFO, image_qos(
                params["image_reliability"], depth=10), self.on_camera_info)
        if params["detector"] == "external":
            t.create_subscription(self.kind.detections_topic, self.kind.detections_msgtype,
                                  DEFAULT, self.on_detections)
        self.stats.start(self.clock())
        self.publish_topology()
        self.log.info(
            f"{self.kind.name} mesh node ready: model={self.model.name}, "
            f"detector={params['detector']}, engine={params['engine']}, "
            f"device={params['device']}, image transport={params['image_transport']}"
        )

    def publish_topology(self) -> None:
        """Publish the mesh model's topology once (latched)."""
        header = messages.make_header(self.transport.now_ns(), "", self.store)
        msg = topology_message(self.model, header, self.store)
        self._publishers["topology"].publish(messages.serialize(msg, MESH_TOPOLOGY, self.store))

    # --------------------------------------------------------------- callbacks
    def on_image(self, raw: bytes) -> None:
        """Receive a ``sensor_msgs/Image``."""
        self._receive(raw, IMAGE)

    def on_compressed_image(self, raw: bytes) -> None:
        """Receive a ``sensor_msgs/CompressedImage``."""
        self._receive(raw, COMPRESSED_IMAGE)

    def _receive(self, raw: bytes, msgtype: str) -> None:
        now = self.clock()
        try:
            msg = messages.deserialize(raw, msgtype, self.store)
        except Exception as exc:  # rosbags raises SerdeError and others for corrupt CDR
            self._reject(f"skipped a {msgtype} that does not decode: {exc}")
            return
        self.stats.input(now)
        frame = Frame(msg, msgtype, now)
        if self.params["detector"] == "external":
            paired = self.pairing.add_image(frame)
            if paired is not None:
                self.slot.put(paired)
        else:
            self.slot.put(frame)

    def on_camera_info(self, raw: bytes) -> None:
        """Receive a ``sensor_msgs/CameraInfo``; bad intrinsics are logged and skipped."""
        try:
            msg = messages.deserialize(raw, CAMERA_INFO, self.store)
            intrinsics = intrinsics_from_camera_info(msg)
        except CameraInfoError as exc:
            self._reject(f"skipped a CameraInfo: {exc}")
            return
        except Exception as exc:
            self._reject(f"skipped a CameraInfo that does not decode: {exc}")
            return
        with self._lock:
            self.intrinsics.add(messages.stamp_to_ns(msg.header.stamp), intrinsics)

    def on_detections(self, raw: bytes) -> None:
        """Receive the kind's detection array from an external detector."""
        msgtype = self.kind.detections_msgtype
        assert self.kind.parse_detections is not None
        try:
            msg = messages.deserialize(raw, msgtype, self.store)
        except Exception as exc:
            self._reject(f"skipped a {msgtype} that does not decode: {exc}")
            return
        boxes, problems = self.kind.parse_detections(msg, self.store)
        for problem in problems:
            self._warn_throttled("detections", f"skipped an external {problem}")
        paired = self.pairing.add_detections(messages.stamp_to_ns(msg.header.stamp), boxes)
        if paired is not None:
            self.slot.put(paired)

    # ------------------------------------------------------------- processing
    def spin_once(self, timeout: float = 0.1) -> bool:
        """Process the newest frame if one arrives within ``timeout``.

        Also publishes diagnostics when they are due.

        Returns:
            Whether a frame was processed and its outputs published (``False`` when none came
            or it was malformed).

        """
        frame = self.slot.take(timeout)
        processed = False
        if frame is not None:
            try:
                processed = self.process_frame(frame) is not None
            except Exception as exc:  # keep serving: one failing frame must not stop the node
                self.stats.rejected()
                self.log.error(f"failed to process the image stamped {frame.stamp_ns} ns: "
                               f"{type(exc).__name__}: {exc}")
        self._maybe_publish_diagnostics()
        return processed

    def process_frame(self, frame: Frame) -> FrameTimings | None:
        """Run one frame through decode, detection, pipeline, conversion and publication.

        Returns:
            The stage timings, or ``None`` when the image was malformed and skipped.

        """
        timings = FrameTimings()
        params = self.params
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        try:
            if frame.msgtype == COMPRESSED_IMAGE:
                rgb = decode_compressed_image(frame.message)
            else:
                rgb = decode_image(frame.message)
        except UnsupportedEncodingError as exc:
            self.stats.rejected()
            self._warn_once(f"encoding:{getattr(frame.message, 'encoding', '')}"
                            f"{getattr(frame.message, 'format', '')}", f"skipping images: {exc}")
            return None
        except ImageDecodeError as exc:
            self._reject(f"skipped an image: {exc}")
            return None
        t1 = time.perf_counter()
        timings.decode = t1 - t0
        timings.overhead_cpu = time.thread_time() - cpu0

        if frame.detections is not None:
            boxes = frame.detections
        else:
            assert self.detector is not None
            boxes = self.detector.detect(rgb)
        boxes = select_boxes(boxes, params["score_threshold"], params[self.kind.max_parameter])
        boxes, track_ids = self.stream.assign(boxes)
        t2 = time.perf_counter()
        timings.detect = t2 - t1

        camera = resolve_intrinsics(
            self._intrinsics_for(frame.stamp_ns, rgb.shape[1], rgb.shape[0]),
            rgb.shape[1], rgb.shape[0],
        )
        results = self.pipeline.process(rgb, boxes, camera) if boxes else []
        for reason in getattr(self.pipeline, "skipped", ()):
            self._warn_throttled(f"skipped:{reason}", f"skipped a {self.kind.name}: {reason}")
        results = self.stream.finish(results, result_track_ids(results, track_ids),
                                     frame.stamp_ns * 1e-9, camera)
        if self.stream.dropped:
            self._warn_throttled("non_finite", f"dropped {self.stream.dropped} "
                                 f"{self.kind.name}(s) with "
                                 "non-finite vertices or joints (check the model weights and "
                                 "the engine precision)")
        t3 = time.perf_counter()
        timings.infer = t3 - t2

        cpu2 = time.thread_time()
        self._publish_outputs(frame, rgb, results, camera, timings)
        timings.overhead_cpu += time.thread_time() - cpu2
        done = self.clock()
        self.stats.output(done, done - frame.received)
        self.last_timings = timings
        return timings

    def _publish_outputs(
        self,
        frame: Frame,
        rgb: np.ndarray,
        results: list[Any],
        camera: CameraIntrinsics,
        timings: FrameTimings,
    ) -> None:
        header = frame.message.header
        ids = self.kind.result_ids(results)
        outgoing: list[tuple[str, Any, str]] = []

        def add(key: str, build: Callable[[], Any], msgtype: str) -> None:
            start = time.perf_counter()
            msg = build()
            timings.convert += time.perf_counter() - start
            outgoing.append((key, msg, msgtype))

        add(self.kind.output, lambda: self.kind.array_message(header, results, self.store,
                                                      self.model.num_vertices),
            self.kind.output_msgtype)
        if self.params["publish_markers"] and self._wanted("markers"):
            add("markers", lambda: self.markers.build(header, results, ids), MARKER_ARRAY)
        if self.params["publish_tf"] and results and self._wanted("tf"):
            add("tf", lambda: self.kind.transforms(header, results, ids,
                                                   self.params["tf_prefix"], self.store),
                TF_MESSAGE)
        if self.params["publish_debug_image"] and self._wanted("debug_image"):
            add("debug_image", lambda: self._debug_image(header, rgb, results, camera),
                IMAGE)
        for key, msg, msgtype in outgoing:
            start = time.perf_counter()
            if isinstance(msg, PackedMarkerArray):
                raw = msg.serialize()
            else:
                raw = messages.serialize(msg, msgtype, self.store)
            mid = time.perf_counter()
            self._publishers[key].publish(raw)
            timings.serialize += mid - start
            timings.publish += time.perf_counter() - mid
            timings.sizes[key] = len(raw)

    def _debug_image(
        self,
        header: Any,
        rgb: np.ndarray,
        results: list[Any],
        camera: CameraIntrinsics,
    ) -> Any:
        bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
        drawn = self.kind.draw(bgr, results, self.model, camera)
        return encode_image(cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), header, "rgb8", self.store)

    def _wanted(self, key: str) -> bool:
        return self._publishers[key].subscription_count() > 0

    def _intrinsics_for(self, stamp_ns: int, width: int, height: int) -> CameraIntrinsics | None:
        override = self.params["intrinsics"]
        if any(override):
            return CameraIntrinsics(*override)
        if self.params["use_camera_info"]:
            with self._lock:
                try:
                    intrinsics, exact = self.intrinsics.lookup(stamp_ns)
                except LookupError:
                    intrinsics, exact = None, None
            if exact is False:
                self._warn_once("camera_info_stamp", "no CameraInfo carries the image's stamp; "
                                "using the newest CameraInfo (publish both with one stamp)")
            if exact is None:
                self._warn_once("camera_info_missing", "no CameraInfo received on camera_info "
                                "yet: using the default focal length (set the intrinsics "
                                "parameter or remap camera_info)")
            elif intrinsics is None:
                self._warn_once("camera_info_zero", "CameraInfo has an all-zero K (uncalibrated "
                                "camera): using the default focal length")
            return intrinsics
        self._warn_once("no_intrinsics", f"no intrinsics: using the default focal length for "
                        f"{width}x{height} images (set use_camera_info or intrinsics)")
        return None

    # ---------------------------------------------------------- diagnostics
    def _maybe_publish_diagnostics(self) -> None:
        now = self.clock()
        if now - self._last_diagnostics < self.params["diagnostics_period"]:
            return
        self._last_diagnostics = now
        self.publish_diagnostics()

    def publish_diagnostics(self) -> None:
        """Publish the node's status on ``/diagnostics``."""
        snapshot = self.stats.snapshot(self.clock())
        header = messages.make_header(self.transport.now_ns(), "", self.store)
        msg = diagnostic_array(
            header,
            f"{self.transport.node_name}: {self.kind.name} mesh pipeline",
            self.params["device"],
            snapshot,
            extra={"engine": self.params["engine"], "detector": self.params["detector"],
                   "overhead_ms": f"{self.last_timings.overhead * 1e3:.2f}"},
            store=self.store,
        )
        self._publishers["diagnostics"].publish(
            messages.serialize(msg, DIAGNOSTIC_ARRAY, self.store)
        )

    # ------------------------------------------------------------ parameters
    def set_parameters(self, values: dict[str, Any]) -> tuple[bool, str]:
        """Apply run-time parameter changes; return ``(accepted, reason)``."""
        try:
            changed = self.params.update(values)
        except ParameterError as exc:
            return False, str(exc)
        if "marker_lifetime" in changed:
            self.markers.lifetime_s = changed["marker_lifetime"]
        if "marker_mesh" in changed:
            self.markers.mesh = changed["marker_mesh"]
        if "smoothing" in changed:
            self.stream.smoothing = changed["smoothing"]
        if changed:
            self.log.info("parameters changed: " + ", ".join(f"{k}={v!r}"
                                                              for k, v in changed.items()))
        return True, ""

    def shutdown(self) -> None:
        """Stop waiting for frames."""
        self.slot.close()

    # ---------------------------------------------------------------- logging
    def _warn_once(self, key: str, text: str) -> None:
        if key in self._warned or len(self._warned) > MAX_WARNING_KEYS:
            return
        self._warned.add(key)
        self.log.warning(text)
        if len(self._warned) > MAX_WARNING_KEYS:  # a stream of ever-new problems: stop here
            self.log.warning(f"more than {MAX_WARNING_KEYS} distinct one-time warnings; "
                             "further new ones are not logged")

    def _warn_throttled(self, key: str, text: str, period_s: float = 5.0) -> None:
        now = self.clock()
        if now - self._warned_at.get(key, -float("inf")) >= period_s:
            self._warned_at[key] = now
            self.log.warning(text)
            if len(self._warned_at) > MAX_WARNING_KEYS:
                # Keys older than the period would log again anyway: forgetting them bounds
                # the table (messages with ever-changing reasons would grow it forever).
                self._warned_at = {k: t for k, t in self._warned_at.items()
                                   if now - t < period_s}

    def _reject(self, text: str) -> None:
        """Count a skipped message and log why (the same reason at most every 5 s)."""
        self.stats.rejected()
        self._warn_throttled(text, text)
