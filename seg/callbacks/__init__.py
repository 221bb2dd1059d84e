"""Lightning callbacks of this project, enabled from conf/callbacks/."""

from seg.callbacks.curves import LearningCurves
from seg.callbacks.predictions import PredictionImages

__all__ = ["LearningCurves", "PredictionImages"]
