"""ament_python package: `pip install .` (into the venv) or `colcon build` on a robot."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "vla_align_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/model", glob("config/model/*.yaml")),
        (f"share/{PACKAGE}/config/sim", glob("config/sim/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/config/nodes", glob("config/nodes/*.yaml")),
        (f"share/{PACKAGE}/config/dds", glob("config/dds/*.xml")),
        (f"share/{PACKAGE}/config/robots", glob("config/robots/*.yaml") + glob("config/robots/*.xml")),
        (f"share/{PACKAGE}/config/ablation", glob("config/ablation/*.yaml")),
        # The shipped trained model (make checkpoint rebuilds it): the demo's closed loop.
        (f"share/{PACKAGE}/models/sim_tiny", glob("models/sim_tiny/*.json")),
        (f"share/{PACKAGE}/models/sim_tiny/checkpoint", glob("models/sim_tiny/checkpoint/*.*")),
        (f"share/{PACKAGE}/models/sim_tiny/checkpoint/tokenizer", glob("models/sim_tiny/checkpoint/tokenizer/*")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="vla_align_ros maintainers",
    maintainer_email="maintainers@vla-align.dev",
    description="Trimodal vision-language-action alignment for ROS 2 manipulators",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vla-align = vla_align_ros.cli:main",
            "sim_node = vla_align_ros.ros.entry:sim_node",
            "trainer_node = vla_align_ros.ros.entry:trainer_node",
            "perception_node = vla_align_ros.ros.entry:perception_node",
            "policy_node = vla_align_ros.ros.entry:policy_node",
            "vla_align_node = vla_align_ros.ros.entry:vla_align_node",
        ],
    },
)
