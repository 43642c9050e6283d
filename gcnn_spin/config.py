"""Configs are data: TOML files loaded into frozen dataclasses. Unknown keys raise, listing the valid ones.

Science settings (``ExperimentConfig``: data, training, grid) are kept apart from cluster profiles
(``ClusterProfile``: partition, GPUs, time, image). Shipped files live in ``gcnn_spin/configs/``;
``load_experiment("demo")`` finds a shipped one by name, any other argument is a path.

A key that takes one of a fixed set of names is typed ``Literal[...]`` (the aliases below: the one list of those
names; a module that needs them takes :func:`choices` of its alias) and checked here, at load, and whenever a config
is built in code.

Errors say whose they are: a file that is not valid TOML, or holds an unknown key, a value of the wrong type or a
name that is not one of the key's choices, is named with the line; a ``--set`` override that does (an unknown key,
a wrong type, no choice) is named as the flag, never as the file it was applied to.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema; ``key``: the dotted key at fault, if one is."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


# ----------------------------------------------------------------------------- choices

#: ``data.field``: ``gcnn_spin.data.images.FIELDS``; the first is the default (stores record any other).
ImageField = Literal["inscribed", "full_frame"]
#: ``data.sdss_neighbours``: ``gcnn_spin.data.sdss.NEIGHBOUR_FUNCTIONS``.
SdssNeighbours = Literal["all", "primary"]
#: ``data.codec``: ``gcnn_spin.data.store.CODECS``.
Codec = Literal["none", "zstd", "blosc-lz4", "blosc-lz4hc", "blosc-zstd", "blosc-zstd-bitshuffle",
                "blosc-lz4-bitshuffle"]
#: ``train.optimizer``: the one optimiser training builds (``gcnn_spin.train``).
Optimizer = Literal["adamw"]
#: ``train.tables_checkpoint``: the weights a finished run is evaluated and exported with
#: (``gcnn_spin.analysis.sections.metrics.WEIGHTS`` names them).
TablesCheckpoint = Literal["final", "least_val_loss"]
#: ``rotation_study.kde``: ``gcnn_spin.analysis.overlap.KDE_METHODS``.
KdeName = Literal["reflected", "study_code"]
#: ``tables.spread_ddof``: ``gcnn_spin.analysis.collect.SPREADS``.
SpreadDdof = Literal[1, 0]
#: ``tables.val_columns``: ``gcnn_spin.analysis.sections.metrics.VAL_COLUMNS``.
ValColumns = Literal["evaluated", "least_val_loss_epoch"]
#: ``executor`` of a cluster profile: ``auto`` = SLURM where ``sbatch`` exists (``gcnn_spin.cluster.executor``).
Executor = Literal["auto", "slurm", "local"]
#: ``container_runtime`` of a cluster profile (``gcnn_spin.cluster.executor.python_command``).
ContainerRuntime = Literal["apptainer", "podman"]


def choices(tp: Any) -> tuple:
    """The values of a ``Literal`` alias above, in order."""
    return typing.get_args(tp)


def check_choice(key: str, value: Any, tp: Any) -> Any:
    """``value`` if it is one of :func:`choices` of ``tp`` (of the same type: ``true`` is not ``1``), else a
    :class:`ConfigError` naming ``key``, the value and the choices."""
    options = choices(tp)
    if not any(type(value) is type(option) and value == option for option in options):
        raise ConfigError(f"{key}={value!r}: must be one of {', '.join(map(str, options))}", key=key)
    return value


@functools.cache
def _choice_fields(cls: type) -> dict[str, Any]:
    return {name: tp for name, tp in typing.get_type_hints(cls).items() if typing.get_origin(tp) is Literal}


class ChoicesChecked:
    """Base of a dataclass whose ``Literal`` fields hold one of their choices, however it was made (loading a config
    checks first, naming the dotted key and the line)."""

    def __post_init__(self) -> None:
        for name, tp in _choice_fields(type(self)).items():
            check_choice(f"{type(self).__name__}.{name}", getattr(self, name), tp)


@dataclasses.dataclass(frozen=True)
class QualityCuts:
    """SDSS DR7 r-band cuts of the study."""

    max_petro_mag_err_r: float = 1.0
    min_petro_r50_arcsec: float = 1.0
    max_petro_r50_rel_err: float = 0.25
    max_neighbours_1arcsec: int = 0


@dataclasses.dataclass(frozen=True)
class DataConfig(ChoicesChecked):
    match_radius_arcsec: float = 10.0
    neighbour_radius_arcsec: float = 1.0
    #: Which SDSS detections count as neighbours: "all" (PhotoObjAll, dbo.fGetNearbyObjAllEq; the study's
    #: Table 1 drop) or "primary" (PhotoPrimary, dbo.fGetNearbyObjEq).
    sdss_neighbours: SdssNeighbours = "all"
    cuts: QualityCuts = QualityCuts()
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # of the downsampled train/val set
    split_seed: int = 12345
    #: True: the study code's split (its dataset_utils.py), for comparison only: train on a seeded 20 % of the
    #: train/val galaxies and validate on those same galaxies. Applied when training (``gcnn_spin.data.study_split``);
    #: the stores are unchanged. False: train on the train store, validate on the held-out val store.
    study_code_split_bug: bool = False
    #: Downsampling of train/val by m = max(P_CW, P_ACW): (upper edge of the bin, fraction kept).
    downsample_bins: tuple[tuple[float, float], ...] = ((0.1, 0.05), (0.2, 0.2), (0.3, 0.5))
    #: S: the stores' image side; each model's crop is derived from it (``gcnn_spin.crop``: 161 gives ResNets 161,
    #: LeNets 160).
    image_size: int = 161
    #: Train store kept at k x the margin size; the loader rotates there, then resizes to S with antialiasing
    #: (rotate before downsampling: gcnn_spin.data.images). 1 = rotate at the final resolution. See BENCHMARKS.md.
    train_oversample: int = 1
    #: Image field: "inscribed" (the square inscribed in the rotated cutout, no padding visible) or "full_frame"
    #: (the study's code: the whole cutout resized to S, rotated first with reflect-101 corners). Stores record it.
    field: ImageField = "inscribed"
    chunk_images: int = 32
    shard_images: int = 1024
    codec: Codec = "zstd"
    codec_level: int = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig(ChoicesChecked):
    optimizer: Optimizer = "adamw"
    lr: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 100
    step_size: int = 5
    gamma: float = 0.85
    epochs: int = 120
    #: Per-model epoch overrides (the study stopped LeNets at 60).
    epochs_by_model: Mapping[str, int] = dataclasses.field(default_factory=lambda: {"lenet": 60, "g_lenet": 60})
    rotate: bool = True  # False = the study's "_nr" runs
    #: Epochs of every run trained without rotation (the study's ``*_60_nr``); 0 = as its rotated run.
    epochs_no_rotation: int = 0
    #: Extra keyword arguments for ``gcnn_spin.models.build`` (e.g. a smaller ``base_width`` for the demo).
    model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    dropout: float = 0.5
    bf16: bool = True  # autocast on CUDA only
    channels_last: bool = True  # CUDA only
    num_threads: int = 0  # torch CPU threads; 0 = leave torch's default
    max_train_batches: int = 0  # 0 = all; >0 caps batches per epoch (smoke tests)
    #: Weights the metrics, test predictions and export come from: "final" (the last epoch) or "least_val_loss"
    #: (the epoch of least validation loss, saved whenever it improves; resumable like the checkpoint).
    tables_checkpoint: TablesCheckpoint = "final"

    def epochs_for(self, model: str) -> int:
        if not self.rotate and self.epochs_no_rotation:
            return int(self.epochs_no_rotation)
        return int(self.epochs_by_model.get(model, self.epochs))


@dataclasses.dataclass(frozen=True)
class GridConfig:
    models: tuple[str, ...] = ("lenet", "g_lenet", "resnet18", "resnet50", "ce_resnet50", "g_resnet18",
                               "g_resnet50", "g_resnet18_c", "g_resnet50_c", "gc_resnet18", "gc_resnet50")
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    #: Models also trained without rotation, as the runs ``{model}_nr`` beside the rotated ones
    #: (``gcnn_spin.run.grid_run_names``).
    no_rotation_models: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RotationStudyConfig(ChoicesChecked):
    """The MC-dropout rotation study (``gcnn_spin.analysis.rotation``). Analysis only: no part of a run's identity.

    Defaults are this project's choices; the study config sets what the study's code ran (``docs/study_deviations.md``).
    """

    #: 0, 22.5, ..., 180: 5 of the 9 are C8 rotations (the study's code: 0, 20, ..., 160).
    angles_deg: tuple[float, ...] = tuple(22.5 * k for k in range(9))
    n_passes: int = 10
    n_images: int = 1000
    #: "reflected" (kernels reflected at 0 and 1, 512 points, trapezoid) or "study_code" (unreflected, 100 points,
    #: rectangle sum): ``gcnn_spin.analysis.overlap.KDE_METHODS``.
    kde: KdeName = "reflected"
    #: Reuse one backbone pass for the MC passes of an angle (the same samples; ``gcnn_spin.models.mc``).
    head_only: bool = True


@dataclasses.dataclass(frozen=True)
class TablesConfig(ChoicesChecked):
    """How ``collect`` summarises over seeds. Analysis only: no part of a run's identity."""

    #: Delta degrees of freedom of every spread over seeds (±): 1 = the sample standard deviation, 0 = the study's
    #: ``np.std`` (smaller by sqrt((n-1)/n)).
    spread_ddof: SpreadDdof = 1
    #: Where Tables 6-7's val columns come from: "evaluated" (the weights the run exported, ``metrics.json``) or
    #: "least_val_loss_epoch" (``history.csv`` at the epoch of least validation loss, as the study's code reported
    #: them beside its final-weight test columns).
    val_columns: ValColumns = "evaluated"


#: Sections of an experiment config that only analyses read: left out of a training run's identity, so changing
#: them retrains nothing.
ANALYSIS_SECTIONS = ("rotation_study", "tables")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "experiment"
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    grid: GridConfig = GridConfig()
    rotation_study: RotationStudyConfig = RotationStudyConfig()
    tables: TablesConfig = TablesConfig()


#: Keys of an experiment config that say which runs to train or what the config is called, not how a run trains:
#: left out of a run's identity, so adding a model or seed to the grid retrains nothing.
NOT_TRAINING = ("name", "grid", *ANALYSIS_SECTIONS)
#: Per-model epoch tables, replaced in a run's identity by the epochs that run trains.
EPOCH_TABLES = ("epochs_by_model", "epochs_no_rotation")


def training_identity(cfg: ExperimentConfig, model: str) -> dict[str, Any]:
    """The plain-data config that the identity of a run of ``model`` hashes: the data and training settings as
    that run uses them (its own epochs: another model's entry in ``epochs_by_model`` is not part of it), without
    :data:`NOT_TRAINING`."""
    identity = {k: v for k, v in to_dict(cfg).items() if k not in NOT_TRAINING}
    train = {k: v for k, v in identity["train"].items() if k not in EPOCH_TABLES}
    identity["train"] = {**train, "epochs": cfg.train.epochs_for(model)}
    return identity


@dataclasses.dataclass(frozen=True)
class ClusterProfile(ChoicesChecked):
    """Where and with what resources array tasks run. Nothing here changes a result."""

    name: str = "local"
    executor: Executor = "auto"
    partition: str = "a100"
    account: str = ""
    qos: str = ""
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int = 64
    time_min: int = 720
    max_array_size: int = 1000  # stay under SLURM's MaxArraySize (default 1001)
    array_parallelism: int = 64
    container_image: str = ""  # apptainer: a .sif file; podman: an image name; empty = run in the project's venv
    container_runtime: ContainerRuntime = "apptainer"  # same binds
    container_command: str = ""  # the runtime's executable or a wrapper of it; empty = container_runtime
    bind: tuple[str, ...] = ()  # folders bound besides those the stage's tasks read and write
    extra_sbatch: Mapping[str, str] = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------- loading


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return check_choice(where, value, tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}", key=where)
        return from_mapping(tp, value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", key=where)
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis) else None
        if inner is not None:
            return tuple(_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (Mapping, dict) or tp in (dict,):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}", key=where)
        return types.MappingProxyType(dict(value))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}", key=where)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}", key=where)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}", key=where)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}", key=where)
        return value
    return value


def from_mapping(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(fields)}",
                          key=f"{where}.{unknown[0]}" if where else unknown[0])
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (for hashing, markers and TOML/JSON dumps)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _resolve(name_or_path: str | Path, subdir: str = "") -> Path:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise ConfigError(f"config file not found: {path}")
        return path
    shipped = CONFIG_DIR / subdir / f"{name_or_path}.toml"
    if not shipped.exists():
        names = sorted(p.stem for p in (CONFIG_DIR / subdir).glob("*.toml"))
        raise ConfigError(f"no config named {name_or_path!r}; shipped ones: {names} (or pass a .toml path)")
    return shipped


def _deep_update(base: dict, overrides: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _deep_update(dict(out[key]), value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"train.epochs=3"`` -> ``{"train": {"epochs": 3}}`` (the value is read as TOML, else as a string)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _line_of(text: str, key: str | None) -> int | None:
    """The line (1-based) of a TOML file where dotted ``key`` (``train.epochs``, ``grid.models[1]``) is set."""
    if not key:
        return None
    parts = re.sub(r"\[\d+\]", "", key).split(".")
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[([^\[\]]+)\]\s*(#.*)?$", line)
        if header:
            table = [p.strip().strip('"') for p in header.group(1).split(".")]
            if table == parts:  # the key is a whole table: its header
                return number
            continue
        assignment = re.match(r"\s*([\w.\"-]+)\s*=", line)
        if assignment and table + [p.strip().strip('"') for p in assignment.group(1).split(".")] == parts:
            return number
    return None


def _load(cls: type, name_or_path: str | Path, subdir: str, overrides: list[str] | tuple[str, ...],
          flag: str) -> Any:
    path = _resolve(name_or_path, subdir)
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    try:
        from_mapping(cls, data)
    except ConfigError as err:
        line = _line_of(text, err.key)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {err}", key=err.key) from None
    for override in overrides:  # one at a time, so an error is blamed on the flag that caused it
        try:
            data = _deep_update(data, parse_override(override))
            from_mapping(cls, data)
        except ConfigError as err:
            raise ConfigError(f"{flag} {override}: {err}", key=err.key) from None
    return from_mapping(cls, data)


def load_experiment(name_or_path: str | Path = "experiment", overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Load a science config (shipped name or path), then apply ``section.key=value`` overrides."""
    return _load(ExperimentConfig, name_or_path, "", overrides, "--set")


def load_cluster(name_or_path: str | Path = "local", overrides: list[str] | tuple[str, ...] = ()) -> ClusterProfile:
    """Load a cluster profile (shipped name under ``configs/cluster`` or a path) with ``key=value`` overrides."""
    return _load(ClusterProfile, name_or_path, "cluster", overrides, "--cluster-set")
