"""Lightning callbacks of this project, enabled from conf/callbacks/."""

from seg.callbacks.curves import LearningCurves
from seg.callbacks.predictions import PredictionImages
from seg.callbacks.resilience import ResumableCheckpoint, StopOnNonFiniteLoss

__all__ = ["LearningCurves", "PredictionImages", "ResumableCheckpoint", "StopOnNonFiniteLoss"]
