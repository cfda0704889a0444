"""The offline demo: a synthetic fine-grained dataset, a small OpenCLIP teacher trained on it, the chain."""
