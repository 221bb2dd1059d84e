"""Lightning callbacks of this project, enabled from conf/callbacks/."""

from seg.run.callbacks.curves import LearningCurves
from seg.run.callbacks.predictions import PredictionImages
from seg.run.callbacks.resilience import ResumableCheckpoint, StopOnNonFiniteLoss

__all__ = ["LearningCurves", "PredictionImages", "ResumableCheckpoint", "StopOnNonFiniteLoss"]
