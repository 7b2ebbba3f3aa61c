"""ROS 2 interface: messages, the hand mesh node and its transports.

Nothing here needs a ROS install to import: ``rclpy`` is imported only inside
:mod:`fasthmr_ros.ros.rclpy_transport`'s functions, and the ``dds`` transport speaks the ROS 2
wire format with Cyclone DDS. Messages come from the ``.msg`` files in ``msg/``
(:mod:`fasthmr_ros.ros.messages`).
"""
