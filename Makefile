# vla_align_ros: everything a fresh machine needs is installed by these targets themselves.
#   make test   venv + ROS 2 wheels + message build + package, then the test suite
#   make demo   the same setup, then the main job on the embedded default
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -qq
SITE := $(VENV)/lib/python3.11/site-packages

# DDS must never leave this machine (Kilted ignores ROS_LOCALHOST_ONLY); own domain per run.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_DOMAIN_ID ?= 47
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export MUJOCO_GL ?= egl
export AMENT_PREFIX_PATH := $(abspath $(VENV))
export PYTHONDONTWRITEBYTECODE := 1

# The real ROS 2 launch system (launch, launch_ros, ros2cli), built from source into the venv by its
# own kit where ../shared has it; without it the tests that run `ros2 launch` skip with the reason.
SHARED ?= ../shared
LAUNCH_KIT := $(SHARED)/ros2-launch
# Node executables: `ros2 run` and launch_ros look for them in <prefix>/lib/<package>/ only.
NODE_EXES := sim_node trainer_node perception_node policy_node vla_align_node

# The two packages, side by side at the top level (colcon finds both from here).
PKG := vla_align_ros
MSG_SRCS := $(wildcard vla_align_msgs/msg/*.msg) vla_align_msgs/CMakeLists.txt vla_align_msgs/package.xml
PKG_SRCS := $(shell find $(PKG)/vla_align_ros -name '*.py') $(addprefix $(PKG)/,setup.py setup.cfg package.xml) \
            $(wildcard $(addprefix $(PKG)/,config/*.yaml config/*/*.yaml config/*/*.xml launch/*.py)) \
            $(PKG)/resource/vla_align_ros $(shell find $(PKG)/models -type f)

.PHONY: venv msgs install ros2-launch test demo checkpoint clean
venv: $(VENV)/.deps
msgs: $(VENV)/.msgs
install: $(VENV)/.pkg

$(VENV)/.deps: requirements.txt requirements-build.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing Python dependencies into $(VENV) (first run: about a minute)"
	$(PIP) install -r requirements.txt -r requirements-build.txt
	$(PIP) install --no-deps -r requirements-nodeps.txt
	@# Make the venv behave like a sourced ROS workspace for ament_index lookups.
	@echo "import os, sys; os.environ.setdefault('AMENT_PREFIX_PATH', sys.prefix)" > $(SITE)/vla_align_ament_prefix.pth
	@touch $@

# vla_align_msgs: generated from vla_align_msgs/msg/*.msg with rosidl (C, C++, Python typesupport) into the venv.
$(VENV)/.msgs: $(VENV)/.deps $(MSG_SRCS)
	@echo "[setup] building vla_align_msgs into $(VENV)"
	@rm -rf build/vla_align_msgs; mkdir -p build
	CMAKE_PREFIX_PATH=$(abspath $(VENV)) cmake -S vla_align_msgs -B build/vla_align_msgs \
	  -DCMAKE_INSTALL_PREFIX=$(abspath $(VENV)) -DPython3_EXECUTABLE=$(abspath $(PY)) \
	  -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release > build/vla_align_msgs.log 2>&1 \
	  || { mkdir -p build; cat build/vla_align_msgs.log; exit 1; }
	cmake --build build/vla_align_msgs -j2 >> build/vla_align_msgs.log 2>&1 || { tail -50 build/vla_align_msgs.log; exit 1; }
	cmake --install build/vla_align_msgs >> build/vla_align_msgs.log 2>&1 || { tail -50 build/vla_align_msgs.log; exit 1; }
	$(PY) -c "from vla_align_msgs.msg import GroundingResult, ActionChunk, TaskProgress"
	@touch $@

# The ament_python package itself (non-editable, so launch/ and config/ land in share/).
$(VENV)/.pkg: $(VENV)/.msgs $(PKG_SRCS)
	@echo "[setup] installing vla_align_ros into $(VENV)"
	@rm -rf $(PKG)/build $(PKG)/*.egg-info
	$(PIP) install --no-deps --no-build-isolation --force-reinstall ./$(PKG)
	@rm -rf $(PKG)/build $(PKG)/*.egg-info
	@# pip installs a wheel, which ignores setup.cfg's install_scripts: put the node executables
	@# where `ros2 run` and launch_ros look for them.
	@mkdir -p $(VENV)/lib/vla_align_ros
	@for e in $(NODE_EXES); do ln -sf ../../bin/$$e $(VENV)/lib/vla_align_ros/$$e; done
	@touch $@

ros2-launch: install
	@if [ -f $(LAUNCH_KIT)/install.sh ]; then bash $(LAUNCH_KIT)/install.sh $(VENV); \
	  else echo "[setup] no $(LAUNCH_KIT): ros2 launch is not installed and its tests will skip"; fi

test: install ros2-launch
	$(VENV)/bin/ruff check $(PKG) test scripts
	$(PY) -m pytest -q -p no:cacheprovider test

demo: install ros2-launch
	$(VENV)/bin/vla-align demo --out runs/demo

# Rebuild the shipped model (vla_align_ros/models/sim_tiny) from nothing: record the 240 training
# episodes, delete the simulator's /ground_truth/* topics from the recording (what is left is what a
# real robot records), train the default recipe on it, and compare the weights with the shipped ones
# byte for byte (seeded, single process: identical on the same torch build and thread count).
REPRO := runs/reproduce
checkpoint: install
	rm -rf $(REPRO)
	$(VENV)/bin/vla-align record --episodes 240 --seed 0 --tasks-per-scene 3 --out $(REPRO)/bags/sim --quiet
	$(VENV)/bin/vla-align strip $(REPRO)/bags/sim $(REPRO)/bags/train
	$(VENV)/bin/vla-align train --bags $(REPRO)/bags/train --config vla_align_ros/config/train/sim_tiny.yaml --out $(REPRO)/sim_tiny
	@a=$$(sha256sum < $(REPRO)/sim_tiny/checkpoint/model.safetensors); b=$$(sha256sum < $(PKG)/models/sim_tiny/checkpoint/model.safetensors); \
	  if [ "$$a" = "$$b" ]; then echo "[checkpoint] identical to $(PKG)/models/sim_tiny: $$a"; \
	  else echo "[checkpoint] differs from $(PKG)/models/sim_tiny ($$a vs $$b)"; exit 1; fi

clean:
	rm -rf $(VENV) build install log
