"""Measure exported artifacts on the target: latency percentiles, throughput, memory, size.

One runner per runtime (`runner.py` is the contract, `runners/` holds one module each): onnxruntime
(runners/ort.py), TensorRT engines (runners/trt.py: tensorrt + cuda-python) and the PyTorch student
(runners/pytorch.py). A runner imports its runtime only when it is used, so profiling ONNX artifacts
on a device needs only numpy, onnxruntime, click and pillow.
"""
