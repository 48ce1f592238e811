"""``vla-align bench``: per-frame latency by stage, ROS transport, training throughput, SigLIP
memory, bag ingestion and simulator speed, printed as JSON. Ratios are taken within one run."""
