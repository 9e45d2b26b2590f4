"""The workbench's state without any GUI toolkit: a :class:`Session` holds the measurement, the
run settings, the prediction and the result; front ends subscribe to its events."""
from .events import EVENTS, MeasurementChanged, PlanChanged, RecipeChanged, ResultChanged
from .model import Session, config_from_provenance, direct_reconstruction
from .opening import Opened, import_format, read_file

__all__ = ["EVENTS", "MeasurementChanged", "Opened", "PlanChanged", "RecipeChanged", "ResultChanged", "Session",
           "config_from_provenance", "direct_reconstruction", "import_format", "read_file"]
