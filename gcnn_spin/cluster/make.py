"""``make submit-NAME`` and ``make status STAGE=NAME`` for every stage of the registry, from each stage's data.

A stage says, as data (:attr:`Stage.make <gcnn_spin.cluster.stage.Stage>`), which make variables fill which of
its flags; the Makefile has one pattern rule that hands its variables over as ``VAR=VALUE`` words:

    python -m gcnn_spin.cluster.stages NAME --from-make submit DATA=data RUNS=runs ...   # what make submit-NAME runs
    python -m gcnn_spin.cluster.stages NAME --from-make submit --print-argv DATA=data ... # the argv, as JSON
    python -m gcnn_spin.cluster.stages NAME --from-make status LOGS=logs [DEEP=1]        # make status STAGE=NAME

A variable the Makefile does not hand over is read from the environment (where make puts the ones given on its
command line), so a new stage with a new variable needs no Makefile edit either. Every stage gets the cluster
flags (``CLUSTER``, ``CLUSTER_ARGS``) after its own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import UserError
from ..layout import stage_logs

if TYPE_CHECKING:
    from .stage import Stage

ACTIONS = ("submit", "status")


@dataclasses.dataclass(frozen=True)
class Flag:
    """One flag of ``make submit-NAME``: ``flag`` then ``value``, a template of make variables (``{DATA}/x``;
    ``{stage}`` is the stage's name).

    ``words``: the value is a list, given after one flag (``--models a b``), and the flag is left out when it is
    empty; ``each``: every word after its own flag (``--set a --set b``). Otherwise the value is one word and every
    variable in it must be set. ``unless``: leave the flag out when a variable has this value (``SPLIT=survey``).
    """

    flag: str
    value: str
    words: bool = False
    each: bool = False
    unless: tuple[str, str] | None = None

    def variables(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.value) if name and name != "stage"]

    def argv(self, stage_name: str, values: Mapping[str, str]) -> list[str]:
        if self.unless is not None and values.get(self.unless[0], "").strip() == self.unless[1]:
            return []
        text = self.value.format(stage=stage_name, **{name: values.get(name, "") for name in self.variables()})
        if self.each:
            return [part for word in text.split() for part in (self.flag, word)]
        if self.words:
            return [self.flag, *text.split()] if text.split() else []
        empty = [name for name in self.variables() if not values.get(name, "").strip()]
        if empty:
            raise UserError(f"make submit-{stage_name}: {', '.join(empty)} is empty; {self.flag} needs it "
                            f"(e.g. make submit-{stage_name} {empty[0]}=...)")
        return [self.flag, text]


#: Flags every stage's ``make`` list can name, spelt once.
LOGS = Flag("--logs", "{LOGS}/{stage}")
SUBSET = (Flag("--models", "{MODELS}", words=True), Flag("--seeds", "{SEEDS}", words=True))
SETTINGS = Flag("--set", "{SET}", each=True)
#: Added after every stage's own flags: the cluster profile and its overrides.
ON_CLUSTER = (Flag("--cluster", "{CLUSTER}"), Flag("--cluster-set", "{CLUSTER_ARGS}", each=True))


def variables(stage: Stage) -> list[str]:
    """The make variables ``make submit-NAME`` reads for ``stage``, in the order its flags use them."""
    return list(dict.fromkeys(name for flag in (*stage.make, *ON_CLUSTER) for name in flag.variables()))


def with_environment(values: Mapping[str, str], names: Sequence[str]) -> dict[str, str]:
    """``values``, and those of ``names`` it lacks from the environment (make puts its command line there)."""
    return {**{name: os.environ[name] for name in names if name in os.environ}, **values}


def submit_argv(stage: Stage, values: Mapping[str, str]) -> list[str]:
    """The stage's command line (after ``python -m MODULE``) for ``make submit-NAME`` with make variables
    ``values``; a variable missing there is read from the environment."""
    if not stage.make:
        raise UserError(f"stage {stage.name!r} has no make route (its Stage lists no make flags)")
    values = with_environment(values, variables(stage))
    return ["submit", *(word for flag in (*stage.make, *ON_CLUSTER) for word in flag.argv(stage.name, values))]


def status_argv(stage: Stage, values: Mapping[str, str]) -> list[str]:
    """``python -m gcnn_spin.cluster.arrays``'s command line for ``make status STAGE=NAME [DEEP=1]``."""
    values = with_environment(values, ("LOGS", "DEEP"))
    return ["status", str(stage_logs(values.get("LOGS") or "logs", stage.name)),
            *(["--deep"] if values.get("DEEP", "").strip() else [])]


def parse_assignments(words: Sequence[str]) -> dict[str, str]:
    """``VAR=VALUE`` words, as the Makefile passes its variables."""
    bad = [word for word in words if "=" not in word or not word.split("=", 1)[0].isidentifier()]
    if bad:
        raise UserError(f"--from-make takes VAR=VALUE words, not {bad[0]!r}")
    return dict(word.split("=", 1) for word in words)


def help_lines(stages: Sequence[Stage]) -> list[str]:
    """``make help``'s lines for the stages: target, tab, what it does and the variables it reads."""
    return [f"submit-{s.name}\t{s.make_help} ({' '.join(variables(s))})" for s in stages]


def main(stage: Stage, argv: Sequence[str], prog: str) -> int:
    """``python -m gcnn_spin.cluster.stages NAME --from-make {submit,status} [--print-argv] VAR=VALUE ...``;
    ``prog`` names the stage's command in its messages."""
    from . import arrays
    from . import stage as launcher

    if not argv or argv[0] not in ACTIONS:
        raise UserError(f"--from-make needs an action first: {' or '.join(ACTIONS)}")
    action, rest = argv[0], list(argv[1:])
    print_argv = "--print-argv" in rest
    values = parse_assignments([word for word in rest if word != "--print-argv"])
    command = status_argv(stage, values) if action == "status" else submit_argv(stage, values)
    if print_argv:
        print(json.dumps(command))
        return 0
    return arrays.main(command) if action == "status" else launcher.main(stage, command, prog=prog)
