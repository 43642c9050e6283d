"""Analysis of finished runs and survey predictions: tables, studies, figures and the report.

``collect`` runs the report's ``sections`` (one module per table group, each a function of explicit inputs);
``runs`` finds runs and prediction parts and checks they are complete; ``tables`` averages over seeds;
``overlap``, ``rotation``, ``recovery`` and ``survey`` are the studies; ``figures`` and ``report`` write what
people read.
"""
