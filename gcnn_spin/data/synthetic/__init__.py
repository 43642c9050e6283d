"""The synthetic survey: GZ1 labels, the DESI index, DESI-like cutouts and SDSS photometry, from a seed.

The embedded default of the project: ``generate_survey(RAW, n_gz1=3000, n_survey_only=2000, seed=0)`` writes the
same files, in the same layouts, as the real inputs (see ``docs/architecture.md``), plus ``truth.parquet``.
Modules: ``params`` (what defines a survey), ``population`` (morphology and geometry), ``votes`` (volunteers),
``catalogue`` (sky, ids, photometry, table layouts), ``render`` (cutouts), ``survey`` (writing it all),
``sheet`` (a contact sheet for people).
"""

from gcnn_spin.data.synthetic.params import SurveyParams
from gcnn_spin.data.synthetic.render import render_galaxy
from gcnn_spin.data.synthetic.survey import SurveyExistsError, build_truth, generate_survey, survey_paths

__all__ = ["SurveyExistsError", "SurveyParams", "build_truth", "generate_survey", "render_galaxy", "survey_paths"]
