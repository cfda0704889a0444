"""The loss terms of DAIT and its baselines, as plain functions (method.md writes each one out)."""

from dait_edge.losses.alignment import ira_loss, sia_loss, sra_loss
from dait_edge.losses.dual_head import choose_combination, dho_combine
from dait_edge.losses.kd import kd_loss
from dait_edge.losses.relational import rkd_loss
from dait_edge.losses.schedule import alpha_at
from dait_edge.losses.supervised import labelled_ce

__all__ = [
    "alpha_at",
    "choose_combination",
    "dho_combine",
    "ira_loss",
    "kd_loss",
    "labelled_ce",
    "rkd_loss",
    "sia_loss",
    "sra_loss",
]
