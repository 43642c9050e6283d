"""CVS recovery study of one (model, seed) per array task (see gcnn_spin.analysis.recovery)."""

from gcnn_spin.analysis.studies import main

if __name__ == "__main__":
    raise SystemExit(main(study="recovery"))
