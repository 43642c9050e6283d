"""Tables, figures and report.md from finished runs and survey predictions (see gcnn_spin.analysis.collect)."""

from gcnn_spin.analysis.collect import main

if __name__ == "__main__":
    from gcnn_spin.errors import run_command

    run_command(main)
