"""MC-dropout rotation study of one (model, seed) per array task (see gcnn_spin.analysis.rotation)."""

from gcnn_spin.analysis.studies import main

if __name__ == "__main__":
    raise SystemExit(main(study="rotation"))
