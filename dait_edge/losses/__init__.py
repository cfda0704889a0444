"""The loss terms of DAIT and its baselines, as plain functions (method.md writes each one out)."""

from dait_edge.losses.alignment import ira_loss, sia_loss, sra_loss
from dait_edge.losses.kd import kd_loss
from dait_edge.losses.schedule import alpha_at

__all__ = ["alpha_at", "ira_loss", "kd_loss", "sia_loss", "sra_loss"]
