"""Reports: validation tables against published figures, and figures."""

from cartsim.report.figures import patient_figure, trial_figure
from cartsim.report.validation import KineticCheck, kinetic_checks, render_markdown, render_table

__all__ = ["KineticCheck", "kinetic_checks", "patient_figure", "render_markdown", "render_table",
           "trial_figure"]
