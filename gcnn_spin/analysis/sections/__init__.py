"""The report's sections, one module each. Every section is a function of explicit inputs that writes its tables
and figures under ``RESULTS/`` and returns what it wrote (a :class:`~.common.Written`) plus the data a later
section needs; nothing is passed between sections through shared state.

- ``metrics``: Tables 6 and 7 (loss and accuracy, with and without rotations), metrics per run, training curves;
- ``reflection``: handedness confusions and the confusion-matrix figures;
- ``recovery``: Table 8 (spirals found) and the CVS-recovery fits;
- ``rotation``: the rotation-overlap (η) study's tables and figures;
- ``survey``: Tables 9 and 10 (survey counts and CVS), the sky split and dipole;
- ``validation``: synthetic surveys only, predicted vs true CVS;
- ``completeness``: what is missing, and the figures that could not be drawn.
"""
