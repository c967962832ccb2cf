"""load_config: _base_ inheritance, overrides, schema checks, fingerprint, dump; shipped configs
load."""

from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import yaml

from streamlabel.config.errors import ConfigError, ConfigKeyError
from streamlabel.config.fingerprint import config_fingerprint, dump_config
from streamlabel.config.schema import CHOICES, DEFAULTS, FINGERPRINT_EXCLUDE, KEYS, RANGES, Key
from streamlabel.keys import UnknownKeyError
from streamlabel.launch.run_config import load_run_config as load_config
from streamlabel.methods import available_policies

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


# --------------------------------------------------------------------------- shipped configs
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads(name):
    cfg = load_config(CONFIGS / name)
    # <method>_demo / _cuhk03 / _paper.yaml set up that method (tests/launch/test_recipes.py); the
    # rest hcd
    prefix = name.rsplit("_", 1)[0]
    recipe = (
        name.endswith(("_demo.yaml", "_cuhk03.yaml", "_paper.yaml"))
        and prefix in available_policies()
    )
    expected_policy = prefix if recipe else "hcd"
    assert cfg["policy"]["name"] == expected_policy
    assert set(cfg) == set(DEFAULTS)


def test_shipped_configs_exist():
    names = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {
        "base.yaml",
        "demo.yaml",
        "cpu_cuhk03.yaml",
        "duke_to_market.yaml",
        "market_to_duke.yaml",
        "market_to_msmt17.yaml",
        "unsupervised_market.yaml",
    } <= names


def test_base_yaml_states_the_defaults():
    assert config_fingerprint(load_config(CONFIGS / "base.yaml")) == config_fingerprint(
        load_config(None)
    )


def test_paper_settings():
    cfg = load_config(CONFIGS / "duke_to_market.yaml")
    assert cfg["data"]["source"] == {
        "name": "dukemtmcreid",
        "root": "data/dukemtmc-reid",
        "kwargs": {},
    }
    assert cfg["data"]["target"]["name"] == "market1501"
    optim = cfg["optim"]
    assert (optim["lr"], optim["weight_decay"], optim["gamma"]) == (3.5e-4, 5e-4, 0.1)
    assert optim["milestones"] == [8000, 16000]
    assert (
        cfg["train"]["iterations"],
        cfg["train"]["source_batch"],
        cfg["train"]["target_batch"],
    ) == (24000, 64, 64)
    assert (cfg["data"]["height"], cfg["data"]["width"], cfg["model"]["name"]) == (
        256,
        128,
        "resnet50",
    )
    pol = cfg["policy"]  # the paper's schedule with the default tracking rules (their paper-only keys unset)
    assert (pol["dynamics"], pol["k"], pol["alpha_split"], pol["max_anchors"]) == ("tracking", 30, 0.99, 8)
    assert (pol["alpha_merge"], pol["sigma"], pol["num_levels"]) == (None, None, None)
    paper = load_config(CONFIGS / "hcd_paper.yaml")["policy"]  # the paper's rules as written
    assert (paper["dynamics"], paper["k"], paper["alpha_split"], paper["alpha_merge"], paper["sigma"],
            paper["num_levels"], paper["max_anchors"]) == ("paper", 30, 0.99, 0.99, 0.25, 3, 8)
    assert cfg["model"]["pretrained"]  # a local path the user fills in
    unsup = load_config(CONFIGS / "unsupervised_market.yaml")
    assert unsup["data"]["source"] is None and unsup["train"]["source_batch"] == 0


def test_demo_and_cpu_cuhk03():
    demo = load_config(CONFIGS / "demo.yaml")
    assert (demo["data"]["height"], demo["data"]["width"], demo["model"]["name"]) == (
        64,
        32,
        "osnet_x1_0",
    )
    assert demo["data"]["num_workers"] == 0 and demo["model"]["pretrained"] is None
    assert demo["optim"]["milestones"][0] > demo["train"]["iterations"]
    cuhk = load_config(CONFIGS / "cpu_cuhk03.yaml")
    assert cuhk["data"]["source"] is None
    assert cuhk["data"]["target"] == {
        "name": "cuhk03_p1",
        "root": "../shared/data/cuhk03_p1",
        "kwargs": {},
    }
    assert cuhk["model"] == {
        "name": "onnx",
        "kwargs": {"path": "../shared/models/osnet_x0_25_msmt17.onnx"},
        "pretrained": None,
    }
    assert cuhk["train"]["target_batch"] == 64


# --------------------------------------------------------------------------- inheritance
def test_three_level_chain_with_relative_paths(tmp_path):
    write(tmp_path / "a" / "root.yaml", """
        seed: 1
        train: {iterations: 100, iters_per_epoch: 10}
        optim: {milestones: [1, 2, 3]}
    """)
    write(tmp_path / "b" / "mid.yaml", """
        _base_: ../a/root.yaml
        seed: 2
        train: {iterations: 200}
        optim: {milestones: [50]}
    """)
    leaf = write(tmp_path / "c" / "d" / "leaf.yaml", """
        _base_: ../../b/mid.yaml
        train: {target_batch: 32}
    """)
    cfg = load_config(leaf)
    assert cfg["seed"] == 2
    assert cfg["train"]["iterations"] == 200  # mid wins over root
    assert cfg["train"]["iters_per_epoch"] == 10  # dicts merge deeply: root's key survives
    assert cfg["train"]["target_batch"] == 32
    assert cfg["optim"]["milestones"] == [50]  # lists replace
    assert cfg["train"]["log_every"] == DEFAULTS["train"]["log_every"]


def test_list_of_bases_later_wins(tmp_path):
    write(tmp_path / "one.yaml", "seed: 1\ntrain: {iterations: 10}\n")
    write(tmp_path / "two.yaml", "seed: 2\noptim: {lr: 0.01}\n")
    cfg = load_config(write(tmp_path / "main.yaml", "_base_: [one.yaml, two.yaml]\n"))
    assert (cfg["seed"], cfg["train"]["iterations"], cfg["optim"]["lr"]) == (2, 10, 0.01)
    cfg = load_config(write(tmp_path / "main2.yaml", "_base_: [two.yaml, one.yaml]\n"))
    assert cfg["seed"] == 1


def test_diamond_is_not_a_cycle(tmp_path):
    write(tmp_path / "d.yaml", "seed: 4\n")
    write(tmp_path / "b.yaml", "_base_: d.yaml\n")
    write(tmp_path / "c.yaml", "_base_: d.yaml\n")
    assert load_config(write(tmp_path / "a.yaml", "_base_: [b.yaml, c.yaml]\n"))["seed"] == 4


def test_null_in_child_replaces(tmp_path):
    write(tmp_path / "base.yaml", "model: {pretrained: w.pth}\n")
    child = write(
        tmp_path / "child.yaml",
        "_base_: base.yaml\nmodel: {pretrained: null}\ndata: {source: null}\n",
    )
    cfg = load_config(child)
    assert cfg["model"]["pretrained"] is None
    assert cfg["data"]["source"] is None


def test_cycle_is_detected(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: sub/c.yaml\n")
    write(tmp_path / "sub" / "c.yaml", "_base_: ../a.yaml\n")
    with pytest.raises(
        ConfigError, match=r"cycle: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"
    ):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(write(tmp_path / "self.yaml", "_base_: self.yaml\n"))


def test_bad_base_value(tmp_path):
    with pytest.raises(ConfigError, match="_base_"):
        load_config(write(tmp_path / "x.yaml", "_base_: {a: 1}\n"))
    with pytest.raises(ConfigError, match="missing.yaml.*does not exist"):
        load_config(write(tmp_path / "y.yaml", "_base_: missing.yaml\n"))


def test_changing_a_builder_name_drops_its_old_kwargs(tmp_path):
    cfg = load_config(
        write(tmp_path / "x.yaml", "data: {target: {name: market1501, root: data/m}}\n")
    )
    # no 'domain' kwarg
    assert cfg["data"]["target"] == {"name": "market1501", "root": "data/m", "kwargs": {}}
    cfg = load_config(None, ["data.target.root=elsewhere"])  # same name: merge, kwargs kept
    assert cfg["data"]["target"]["kwargs"] == {"domain": "target"}
    with pytest.raises(ConfigError, match="'data.target.root' is missing"):
        load_config(None, ["data.target.name=market1501"])
    write(
        tmp_path / "m.yaml",
        "model: {name: resnet50, kwargs: {last_stride: 2}, pretrained: w.pth}\n",
    )
    cfg = load_config(write(tmp_path / "o.yaml", "_base_: m.yaml\nmodel: {name: osnet_x0_25}\n"))
    assert cfg["model"] == {"name": "osnet_x0_25", "kwargs": {}, "pretrained": None}
    cfg = load_config(tmp_path / "m.yaml", ["model.kwargs=null"])  # null empties a free map
    assert cfg["model"]["kwargs"] == {}


# --------------------------------------------------------------------------- overrides
def test_override_precedence(tmp_path):
    write(tmp_path / "base.yaml", "train: {iterations: 10}\n")
    path = write(tmp_path / "main.yaml", "_base_: base.yaml\ntrain: {iterations: 20}\n")
    assert load_config(path)["train"]["iterations"] == 20
    assert load_config(path, ["train.iterations=30"])["train"]["iterations"] == 30
    assert (
        load_config(path, ["train.iterations=30", "train.iterations=40"])["train"]["iterations"]
        == 40
    )
    cfg = load_config(
        path,
        [
            "optim.milestones=[5, 6]",
            "policy.k=12",
            "model.kwargs.last_stride=2",
            "data.source=null",
            "optim.lr=1e-3",
        ],
    )
    assert cfg["optim"]["milestones"] == [5, 6]
    assert cfg["policy"]["k"] == 12
    assert cfg["model"]["kwargs"] == {"last_stride": 2}
    assert cfg["data"]["source"] is None and cfg["train"]["source_batch"] == 0
    assert cfg["optim"]["lr"] == 1e-3


def test_yaml_12_floats_and_int_for_float(tmp_path):
    cfg = load_config(
        write(tmp_path / "f.yaml", "optim: {lr: 1e-3, weight_decay: 5E-4, gamma: 1}\n")
    )
    assert cfg["optim"]["lr"] == 1e-3 and cfg["optim"]["weight_decay"] == 5e-4
    assert isinstance(cfg["optim"]["gamma"], float)
    assert config_fingerprint(load_config(None, ["optim.gamma=1"])) == config_fingerprint(
        load_config(None, ["optim.gamma=1.0"]))


@pytest.mark.parametrize("bad", ["no_equals", "=5", "a..b=1", "train.iterations=[1,"])
def test_malformed_overrides(bad):
    with pytest.raises(ConfigError, match="command line"):
        load_config(None, [bad])


# --------------------------------------------------------------------------- unknown keys
def test_unknown_key_in_yaml_names_file_and_suggestion(tmp_path):
    path = write(tmp_path / "configs" / "demo.yaml", "train: {iteratons: 5}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "unknown key 'train.iteratons'" in message
    assert "demo.yaml" in message
    assert "did you mean 'train.iterations'?" in message
    assert isinstance(info.value, UnknownKeyError) and isinstance(info.value, ConfigKeyError)


def test_unknown_key_in_base_names_the_base(tmp_path):
    write(tmp_path / "parent.yaml", "optim: {weight_decy: 0.1}\n")
    with pytest.raises(
        ConfigError,
        match=r"'optim.weight_decy' in \S*parent.yaml; did you mean 'optim.weight_decay'",
    ):
        load_config(write(tmp_path / "child.yaml", "_base_: parent.yaml\n"))


def test_unknown_top_level_and_nested_keys(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'.*did you mean 'train'"):
        load_config(write(tmp_path / "t.yaml", "trian: {iterations: 5}\n"))
    with pytest.raises(ConfigError, match="unknown key 'data.source.rot'.*'data.source.root'"):
        load_config(None, ["data.source.rot=x"])


def test_unknown_key_in_overrides():
    message = "unknown key 'train.iteratons' in command line; did you mean 'train.iterations'"
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["train.iteratons=5"])


def test_unknown_policy_parameter(tmp_path):
    with pytest.raises(
        ConfigKeyError, match=r"unknown key 'policy.simga'.*p.yaml.*did you mean 'policy.sigma'"
    ):
        load_config(write(tmp_path / "p.yaml", "policy: {name: hcd, simga: 0.3}\n"))
    with pytest.raises(
        ConfigKeyError, match=r"'policy.simga' in command line.*did you mean 'policy.sigma'"
    ):
        load_config(None, ["policy.simga=0.3"])
    with pytest.raises(ConfigKeyError, match=r"unknown policy 'hdc'.*did you mean 'hcd'"):
        load_config(None, ["policy.name=hdc"])


def test_policy_parameters_are_filled_and_values_left_to_the_policy():
    cfg = load_config(None, ["policy.dynamics=paper", "policy.sigma=0.3"])
    assert (
        cfg["policy"]["sigma"] == 0.3
        and cfg["policy"]["k"] == 30
        and cfg["policy"]["refresh_every"] == 0
    )
    with pytest.raises(
        ConfigError, match=r"'policy.sigma' \(policy 'hcd'\) in command line: sigma must be in"
    ):
        # the policy's own range check, at load
        load_config(None, ["policy.dynamics=paper", "policy.sigma=7"])
    with pytest.raises(ConfigError, match=r"sigma belong\(s\) to dynamics: paper"):
        # a paper parameter with the default (tracking) dynamics
        load_config(None, ["policy.sigma=0.3"])


def test_free_maps_take_any_key():
    # dataset kwargs are checked by the dataset's builder; model.kwargs against the model's signature
    # when the config is loaded (tests/reliability/test_model_inputs.py)
    cfg = load_config(None, ["data.target.kwargs.anything=1", "data.target.kwargs.foo=[1, 2]",
                             "model.kwargs.embed_dim=256"])
    assert cfg["data"]["target"]["kwargs"]["anything"] == 1 and cfg["data"]["target"]["kwargs"]["foo"] == [
        1,
        2,
    ]
    assert cfg["model"]["kwargs"]["embed_dim"] == 256


# ------------------------------------------------------------------------- types, ranges, choices
@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "train.iterations=abc",
            r"'train.iterations' in command line must be an integer, got str 'abc'",
        ),
        ("train.iterations=1.5", "must be an integer, got float"),
        ("train.iterations=true", "must be an integer, got bool"),
        ("train.amp=1", "must be true or false, got int"),
        ("optim.lr=fast", "must be a number, got str"),
        ("optim.lr=.inf", "finite"),
        ("train={iterations: 5}", None),  # a dict onto a dict is fine
        ("train=5", "'train' in command line must be a mapping, got int"),
        ("device={a: 1}", "'device' .* must be a string, got dict"),
        ("optim.milestones=5", "must be a list"),
        ("optim.milestones=[1, x]", r"'optim.milestones\[1\]'.*must be an integer"),
        ("model.pretrained=5", "must be a string \\(a path\\) or null"),
        ("model.kwargs=5", "mapping of keyword arguments"),
        ("data.source=market", "'data.source' .* must be a mapping"),
        ("policy=hcd", "'policy' .* must be a mapping"),
        ("policy.name=3", "'policy.name' .* must be a policy name"),
    ],
)
def test_wrong_types(override, pattern):
    if pattern is None:
        assert load_config(None, [override])["train"]["iterations"] == 5
        return
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_int_accepted_for_float_and_path_for_none(tmp_path):
    cfg = load_config(None, ["optim.lr=1", "model.pretrained=weights/x.pth"])
    assert cfg["optim"]["lr"] == 1.0 and isinstance(cfg["optim"]["lr"], float)
    assert cfg["model"]["pretrained"] == "weights/x.pth"


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        (
            "loss.source_momentum=-0.1",
            r"'loss.source_momentum' in command line must be in \[0.0, 1.0\]; got -0.1",
        ),
        ("loss.temperature=0", r"'loss.temperature' .* must be > 0.0; got 0.0"),
        ("optim.gamma=0", r"must be in \(0.0, 1.0\]"),
        ("train.iterations=0", r"must be in \[1, 100000000\]"),
        ("data.height=4", r"must be in \[8, 4096\]"),
        ("data.flip_p=1.5", r"in \[0.0, 1.0\]"),
        ("optim.milestones=[-1]", "'optim.milestones' .* must be >= 0"),
        ("seed=-1", r"'seed' .* must be in \[0, 4294967295\]"),
        ("train.log_every=0", "'train.log_every' .* must be >= 1"),
        ("device=gpu", "'device' in command line must be one of auto, cpu, cuda; got 'gpu'"),
        ("train.on_nonfinite=ignore", "one of skip, stop"),
        ("eval.split=test", "one of target, source"),
        ("train.target_batch=30", "multiple of data.num_instances"),
    ],
)
def test_ranges_and_choices(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_config(None, [override])


def test_ranges_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'loss.temperature' in \S*t.yaml must be > 0"):
        load_config(write(tmp_path / "t.yaml", "loss: {temperature: 0}\n"))


def test_unsupervised_source_batch_forced_and_conflicts():
    cfg = load_config(None, ["data.source=null", "train.source_batch=64"])
    assert cfg["train"]["source_batch"] == 0
    with pytest.raises(ConfigError, match="pretrain_iterations.*data.source is null"):
        load_config(None, ["data.source=null", "train.pretrain_iterations=10"])
    with pytest.raises(ConfigError, match="'eval.split' is 'source'"):
        load_config(None, ["data.source=null", "eval.split=source"])


def test_target_cannot_be_null():
    with pytest.raises(ConfigError, match="'data.target' .* must be a mapping"):
        load_config(None, ["data.target=null"])


# --------------------------------------------------------------------------- files
def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml does not exist \(expected a YAML file\)"):
        load_config(tmp_path / "nope.yaml")


def test_directory_and_bad_encoding(tmp_path):
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        load_config(tmp_path)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00seed: 1")
    with pytest.raises(ConfigError, match="bin.yaml"):
        load_config(bad)


@pytest.mark.parametrize("text", ["[1, 2]\n", "just a string\n", "42\n"])
def test_non_mapping_yaml(tmp_path, text):
    with pytest.raises(
        ConfigError, match=r"x.yaml must hold a mapping of keys .* got (list|str|int)"
    ):
        load_config(write(tmp_path / "x.yaml", text))


def test_invalid_yaml_and_duplicate_keys(tmp_path):
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_config(write(tmp_path / "bad.yaml", "train: {iterations: 5\n"))
    with pytest.raises(
        ConfigError, match="(?s)dup.yaml is not valid YAML.*duplicate key 'seed'.*dup.yaml"
    ):
        load_config(write(tmp_path / "dup.yaml", "seed: 1\nseed: 2\n"))


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file_is_refused(tmp_path, text):
    """An empty file is a mistake, not a request for the built-in defaults (a 24,000-iteration
    run)."""
    with pytest.raises(ConfigError, match=r"e\.yaml is empty"):
        load_config(write(tmp_path / "e.yaml", text))


def test_non_string_keys(tmp_path):
    with pytest.raises(ConfigError, match="must be strings"):
        load_config(write(tmp_path / "k.yaml", "1: 2\n"))
    with pytest.raises(ConfigError, match="unknown key 'train.5'"):
        load_config(write(tmp_path / "k2.yaml", "train: {5: 2}\n"))


# --------------------------------------------------------------------------- fingerprint and dump
def test_fingerprint_stable_under_key_order():
    cfg = load_config(None)
    reordered = {k: cfg[k] for k in reversed(list(cfg))}
    reordered["train"] = {k: cfg["train"][k] for k in reversed(list(cfg["train"]))}
    assert config_fingerprint(reordered) == config_fingerprint(cfg)
    assert len(config_fingerprint(cfg)) == 64


@pytest.mark.parametrize(
    "override",
    [
        "optim.lr=0.01",
        "policy.k=20",
        "seed=3",
        "data.target.root=x",
        "train.iters_per_epoch=100",
        "model.name=osnet_x0_25",
        "data.source=null",
    ],
)
def test_fingerprint_changed_by_relevant_keys(override):
    assert config_fingerprint(load_config(None, [override])) != config_fingerprint(
        load_config(None)
    )


@pytest.mark.parametrize(
    "override",
    [
        "output_dir=elsewhere",
        "log.tensorboard=false",
        "eval.batch_size=7",
        "eval.flip=true",
        "train.log_every=1",
        "train.checkpoint_every_epochs=5",
        "train.eval_every_epochs=3",
        "train.iterations=100",
    ],
)
def test_fingerprint_ignores_bookkeeping(override):
    assert config_fingerprint(load_config(None, [override])) == config_fingerprint(
        load_config(None)
    )


# sha256 of the default config: checkpoints record it, so a change here means older runs can no
# longer be resumed. Unchanged by the move of the schema to streamlabel/config (issue 16); changed
# once since, when hcd gained the parameter refresh_source (filled in with its default, so it is
# part of every hcd config), when loss.centres became the plain mean (issue 14), and when
# train.rolling_refresh (issue 30) and train.smoke (issue 33) were added
DEFAULT_FINGERPRINT = "d145e8d91035775539a0104c618f645b9dc6ac187259c188c984f3d81e06e3bf"


def test_fingerprint_of_the_defaults_is_pinned():
    assert config_fingerprint(load_config(None)) == DEFAULT_FINGERPRINT


def test_schema_tables_derive_from_keys():
    def leaves(tree, prefix=""):
        for name, value in tree.items():
            if isinstance(value, dict) and f"{prefix}{name}" not in KEYS:
                yield from leaves(value, f"{prefix}{name}.")
            else:
                yield f"{prefix}{name}"

    assert list(leaves(DEFAULTS)) == list(KEYS)
    # a section whose keys all do not count is excluded whole, as the fingerprint always did
    assert set(FINGERPRINT_EXCLUDE) == {
        "output_dir", "log", "eval", "train.iterations", "train.log_every",
        "train.eval_every_epochs", "train.checkpoint_every_epochs", "train.checkpoint_every_iters",
        "train.channels_last"}
    assert RANGES["loss.temperature"] == (0.0, None, False)
    assert RANGES["data.flip_p"] == (0.0, 1.0, True)
    assert RANGES["seed"] == (0, 2**32 - 1, True)
    assert CHOICES["device"] == ("auto", "cpu", "cuda")
    with pytest.raises(ValueError):
        Key(1, low=0, above=0)
    with pytest.raises(ValueError):
        Key(1, high=2)


def test_fingerprint_does_not_modify_cfg():
    cfg = load_config(None)
    before = copy.deepcopy(cfg)
    config_fingerprint(cfg)
    assert cfg == before
    assert FINGERPRINT_EXCLUDE[0] == "output_dir"


@pytest.mark.parametrize("name", ["demo.yaml", "cpu_cuhk03.yaml", "market_to_duke.yaml"])
def test_dump_round_trips(tmp_path, name):
    cfg = load_config(CONFIGS / name, ["optim.lr=1e-5"])
    out = dump_config(cfg, tmp_path / "run" / "config.yaml")
    assert out.is_file()
    assert yaml.safe_load(out.read_text()) == cfg
    again = load_config(out)
    assert again == cfg
    assert config_fingerprint(again) == config_fingerprint(cfg)
    assert config_fingerprint(cfg) in out.read_text().splitlines()[0]


def test_load_config_does_not_mutate_defaults():
    before = copy.deepcopy(DEFAULTS)
    cfg = load_config(None, ["data.source.kwargs.x=1", "optim.milestones=[1]"])
    cfg["train"]["iterations"] = -5
    assert before == DEFAULTS
