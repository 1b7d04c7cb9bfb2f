"""Built-in T2 units: light-curve features and a supernova-likeness score."""

from units.t2.features import T2LightCurveFeatures
from units.t2.score import T2CandidateScore

__all__ = ["T2CandidateScore", "T2LightCurveFeatures"]
