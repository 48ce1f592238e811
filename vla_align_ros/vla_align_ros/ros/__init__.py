"""The ROS 2 shell: nodes and message conversions. The only place that imports rclpy."""
