import pytest

from gcnn_spin.config import (ClusterProfile, ConfigError, ExperimentConfig, load_cluster, load_experiment,
                              parse_override, to_dict)


@pytest.mark.parametrize("name", ["experiment", "demo"])
def test_shipped_experiments_load(name):
    cfg = load_experiment(name)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.grid.models and cfg.grid.seeds


def test_study_config_matches_reference_hyperparameters():
    cfg = load_experiment("experiment")
    assert (cfg.train.lr, cfg.train.batch_size, cfg.train.step_size, cfg.train.gamma) == (1e-4, 100, 5, 0.85)
    assert cfg.train.epochs_for("resnet18") == 120 and cfg.train.epochs_for("lenet") == 60
    assert cfg.data.downsample_bins == ((0.1, 0.05), (0.2, 0.2), (0.3, 0.5))
    assert len(cfg.grid.seeds) == 5


@pytest.mark.parametrize("name", ["a100", "local"])
def test_shipped_cluster_profiles_load(name):
    assert isinstance(load_cluster(name), ClusterProfile)


def test_unknown_key_raises_with_valid_list(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate.*valid keys.*lr"):
        load_experiment(path)


def test_wrong_type_raises(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(ConfigError, match="train.epochs"):
        load_experiment(path)


def test_overrides_apply_and_are_typed():
    cfg = load_experiment("demo", ["train.epochs=7", "grid.models=['resnet18']", "data.codec=zstd"])
    assert cfg.train.epochs == 7 and cfg.grid.models == ("resnet18",)
    assert parse_override("a.b.c=1") == {"a": {"b": {"c": 1}}}
    with pytest.raises(ConfigError):
        parse_override("no_equals_sign")
    with pytest.raises(ConfigError, match="no config named"):
        load_experiment("does-not-exist")


def test_to_dict_round_trip_is_hashable_data():
    data = to_dict(load_experiment("demo"))
    assert data["train"]["batch_size"] == 50 and isinstance(data["grid"]["models"], list)


# ----------------------------------------------------------------------------- whose error it is


def test_a_file_that_is_not_toml_is_named_with_its_line(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nepochs = 3\nlr = \n")
    with pytest.raises(ConfigError, match=rf"^{path}: not valid TOML: .*line 3"):
        load_experiment(path)


@pytest.mark.parametrize("text, line, key", [
    ("[train]\nepochs = 3\nlearning_rate = 0.1\n", 3, "learning_rate"),
    ("[data]\nimage_size = 33\n\n[train]\n# the study's value\nepochs = 'many'\n", 6, "train.epochs"),
    ("[trian]\nepochs = 3\n", 1, "trian"),
])
def test_a_bad_key_or_value_in_a_file_names_the_file_and_line(tmp_path, text, line, key):
    path = tmp_path / "mine.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"^{path}:{line}: .*{key}") as err:
        load_experiment(path)
    assert "--set" not in str(err.value)


@pytest.mark.parametrize("override, problem", [
    ("train.epoch=3", r"unknown key\(s\) \['epoch'\]; valid keys: .*'epochs'"),
    ("train.epochs=abc", "train.epochs: expected an integer, got 'abc'"),
    ("trian.epochs=3", r"unknown key\(s\) \['trian'\]"),
    ("train.epochs", "must look like section.key=value"),
])
def test_a_bad_override_blames_the_flag_not_the_shipped_file(override, problem):
    with pytest.raises(ConfigError, match=rf"^--set {override}: .*{problem}") as err:
        load_experiment("demo", ["train.epochs=2", override])
    assert "demo.toml" not in str(err.value)


def test_a_bad_cluster_override_names_the_cluster_flag():
    with pytest.raises(ConfigError, match=r"^--cluster-set partiton=h100: .*unknown key\(s\) \['partiton'\]"):
        load_cluster("a100", ["partiton=h100"])
