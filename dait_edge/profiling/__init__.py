"""Measure exported artifacts on the target: latency percentiles, throughput, memory, size.

One runner per runtime, imported only when a profile picks it: onnxruntime (ort_runner), TensorRT
engines (trt_runner: tensorrt + cuda-python) and the PyTorch student (torch_runner). Profiling ONNX
artifacts on a device therefore needs only numpy, onnxruntime, click and pillow.
"""
