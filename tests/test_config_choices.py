"""Keys that take one of a fixed set of names are checked at load, naming the key, the value, the choices and the
file's line or the flag; the modules that act on the names keep no list of their own."""

import dataclasses
import json
import typing

import pytest

from gcnn_spin.config import (CONFIG_DIR, ClusterProfile, Codec, ConfigError, ContainerRuntime, DataConfig, Executor,
                              ExperimentConfig, ImageField, KdeName, Optimizer, SdssNeighbours, SpreadDdof,
                              TablesCheckpoint, ValColumns, choices, load_cluster, load_experiment, to_dict,
                              training_identity)

#: dotted key (a cluster profile's keys have no section) -> its choices' alias and a value that is not one of them
EXPERIMENT_CHOICES = {
    "data.field": (ImageField, "whole"),
    "data.sdss_neighbours": (SdssNeighbours, "secondary"),
    "data.codec": (Codec, "gzip"),
    "train.optimizer": (Optimizer, "sgd"),
    "train.tables_checkpoint": (TablesCheckpoint, "best"),
    "rotation_study.kde": (KdeName, "silverman"),
    "tables.spread_ddof": (SpreadDdof, 2),
    "tables.val_columns": (ValColumns, "best"),
}
CLUSTER_CHOICES = {
    "executor": (Executor, "slrum"),
    "container_runtime": (ContainerRuntime, "docker"),
}
ALL_CHOICES = {**EXPERIMENT_CHOICES, **CLUSTER_CHOICES}


def load(key, overrides=()):
    """The shipped demo config or local cluster profile, whichever ``key`` belongs to, with ``overrides``."""
    if key in CLUSTER_CHOICES:
        return load_cluster("local", list(overrides))
    return load_experiment("demo", list(overrides))


def value_of(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def toml_value(value):
    return json.dumps(value)  # a TOML string or integer


def choices_message(key, value):
    names = ", ".join(map(str, choices(ALL_CHOICES[key][0])))
    return f"{key}={value!r}: must be one of {names}"


@pytest.mark.parametrize("key", list(ALL_CHOICES))
def test_every_choice_of_a_key_loads_as_plain_data(key):
    for choice in choices(ALL_CHOICES[key][0]):
        value = value_of(load(key, [f"{key}={toml_value(choice)}"]), key)
        assert value == choice and type(value) is type(choice)


@pytest.mark.parametrize("key", list(ALL_CHOICES))
def test_a_name_that_is_not_a_choice_in_a_file_names_the_line_and_the_choices(tmp_path, key):
    bad = ALL_CHOICES[key][1]
    path = tmp_path / "mine.toml"
    if key in CLUSTER_CHOICES:
        path.write_text(f'name = "mine"\n# the scheduler\n{key} = {toml_value(bad)}\n')
        loader = load_cluster
    else:
        section, name = key.split(".")
        path.write_text(f'name = "mine"\n\n[{section}]\n# a comment\n{name} = {toml_value(bad)}\n')
        loader = load_experiment
    with pytest.raises(ConfigError) as err:
        loader(path)
    line = 3 if key in CLUSTER_CHOICES else 5
    assert str(err.value) == f"{path}:{line}: {choices_message(key, bad)}"
    assert err.value.key == key


@pytest.mark.parametrize("key", list(ALL_CHOICES))
def test_a_name_that_is_not_a_choice_in_an_override_names_the_flag(key):
    bad = ALL_CHOICES[key][1]
    flag = "--cluster-set" if key in CLUSTER_CHOICES else "--set"
    override = f"{key}={bad}"  # as typed on a command line: a bare word is read as a string
    with pytest.raises(ConfigError) as err:
        load(key, [override])
    assert str(err.value) == f"{flag} {override}: {choices_message(key, bad)}"
    assert ".toml" not in str(err.value)


@pytest.mark.parametrize("value", ["true", "1.0", '"1"'])
def test_an_integer_choice_is_not_a_bool_float_or_string(value):
    with pytest.raises(ConfigError, match=r"tables.spread_ddof=.*: must be one of 1, 0"):
        load_experiment("demo", [f"tables.spread_ddof={value}"])


def test_a_config_built_in_code_is_checked_too():
    with pytest.raises(ConfigError, match="ClusterProfile.executor='slrum': must be one of auto, slurm, local"):
        ClusterProfile(executor="slrum")
    with pytest.raises(ConfigError, match="DataConfig.field='whole': must be one of inscribed, full_frame"):
        dataclasses.replace(DataConfig(), field="whole")
    from gcnn_spin.analysis.collect import Settings

    with pytest.raises(ConfigError, match="Settings.val_columns='best'"):
        Settings(runs="runs", out="results", val_columns="best")


def choice_fields(cls):
    return {name for name, tp in typing.get_type_hints(cls).items() if typing.get_origin(tp) is typing.Literal}


def test_every_choice_key_is_listed_here():
    """A new choice-valued key gets a row above (and so the tests of its messages)."""
    found = {f"{section.name}.{name}" for section in dataclasses.fields(ExperimentConfig)
             if dataclasses.is_dataclass(section.default) for name in choice_fields(type(section.default))}
    assert found == set(EXPERIMENT_CHOICES)
    assert choice_fields(ClusterProfile) == set(CLUSTER_CHOICES)


# ----------------------------------------------------------------------------- one list of names per key


def test_the_modules_tables_of_names_are_keyed_by_the_configs_choices():
    from gcnn_spin.analysis.collect import SPREADS
    from gcnn_spin.analysis.overlap import KDE_METHODS
    from gcnn_spin.analysis.sections.metrics import VAL_COLUMNS, WEIGHTS
    from gcnn_spin.data.images import FIELDS
    from gcnn_spin.data.sdss import NEIGHBOUR_FUNCTIONS

    assert set(KDE_METHODS) == set(choices(KdeName))
    assert set(NEIGHBOUR_FUNCTIONS) == set(choices(SdssNeighbours))
    assert set(VAL_COLUMNS) == set(choices(ValColumns))
    assert set(WEIGHTS) == set(choices(TablesCheckpoint))
    assert set(SPREADS) == set(choices(SpreadDdof))
    assert FIELDS[0] == DataConfig.field  # the default field is the one a store need not record


def test_every_codec_makes_a_checked_compressor():
    from gcnn_spin.data.store import CODECS, compressors_for

    for codec in CODECS:
        assert compressors_for(codec, 1), codec  # a checksum at least, also for "none"
    assert compressors_for("none", 1, checksum=False) is None


def test_the_programmatic_entry_points_name_the_choices():
    from gcnn_spin.analysis.overlap import kde_method
    from gcnn_spin.data.images import check_field
    from gcnn_spin.data.sdss import neighbour_function

    with pytest.raises(ValueError, match="rotation_study.kde='silverman': must be one of reflected, study_code"):
        kde_method("silverman")
    with pytest.raises(ValueError, match="data.sdss_neighbours='secondary': must be one of all, primary"):
        neighbour_function("secondary")
    with pytest.raises(ValueError, match="data.field='whole': must be one of inscribed, full_frame"):
        check_field("whole")


# ----------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_experiment_configs_load_with_plain_choice_values(path):
    """A run's identity hashes the config as plain data: a choice is a plain str or int, as before it was checked."""
    cfg = load_experiment(path)
    data = to_dict(cfg)
    for key in EXPERIMENT_CHOICES:
        section, name = key.split(".")
        assert type(data[section][name]) in (str, int), key
    for model in cfg.grid.models:
        identity = training_identity(cfg, model)
        assert json.loads(json.dumps(identity)) == identity  # plain JSON data: no str() of an object is hashed


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "cluster").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_cluster_profiles_load_with_plain_choice_values(path):
    data = to_dict(load_cluster(path))
    assert all(type(data[key]) is str for key in CLUSTER_CHOICES)
