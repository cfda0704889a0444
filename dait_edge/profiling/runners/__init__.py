"""One module per runtime (see `dait_edge.profiling.runner`): each defines and registers its Runner.

onnxruntime (ort.py): ONNX artifacts, CPU / CUDA / TensorRT providers. tensorrt (trt.py): serialised
engines through TensorRT and cuda-python. torch (pytorch.py): the distilled student's checkpoint, eager or
compiled. None imports its runtime until a runner is used, so discovering them stays light.
"""
