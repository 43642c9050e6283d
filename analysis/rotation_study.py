"""MC-dropout rotation study of one (model, seed) per array task (see gcnn_spin.analysis.rotation)."""

from gcnn_spin.analysis.studies import main

if __name__ == "__main__":
    import functools

    from gcnn_spin.errors import run_command

    run_command(functools.partial(main, study="rotation"))
