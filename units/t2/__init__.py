"""Built-in T2 units: light-curve features, a supernova-likeness score and a light-curve
summary (AMPEL's T2LightCurveSummary, corrected)."""

from skyledger.units.t2.features import T2LightCurveFeatures
from skyledger.units.t2.score import T2CandidateScore
from skyledger.units.t2.summary import T2LightCurveSummary

__all__ = ["T2CandidateScore", "T2LightCurveFeatures", "T2LightCurveSummary"]
