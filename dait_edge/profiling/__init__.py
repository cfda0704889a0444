"""Measure exported artifacts on the target: latency percentiles, throughput, memory, size.

Nothing here imports torch: profiling ONNX artifacts on a device needs only numpy, onnxruntime,
click and pillow (a torch runner, when one is chosen, imports torch itself).
"""
