"""Distillation into a run directory: `run_distill` trains both stages of DAIT (or a baseline's one stage).

The rooms: run.py (the entry and the order of the stages), context.py (the run's data, splits, devices and
folder), vlm_teaching.py (the VLM, its text embeddings and the embedding cache), teachers.py (loading and
storing teachers), stages.py (stage 1, stage 2, a method's calibration), resume.py (starting and resuming a
folder), manifest.py, teacher_cache.py (one stage-1 teacher for every student) and untrained.py.
"""

from dait_edge.distill.run import resolve_config, run_distill

__all__ = ["resolve_config", "run_distill"]
