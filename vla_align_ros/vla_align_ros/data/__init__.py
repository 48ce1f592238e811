"""Data: procedural compositional scenes (and, later, rosbag demonstrations)."""
