"""Loading the TOML configuration: substitution, overrides, .env, typos and the shipped sample."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airisd.config import (
    ROLES,
    apply_set,
    build_config,
    load_config,
    load_dotenv,
    parse_address,
    parse_roles,
    parse_set_value,
    substitute,
)
from airisd.daemon import Daemon, plugin_config
from airisd.errors import ConfigError
from airisd.registry import build_registry
from airisd.sample import sample_config

ROOT = Path(__file__).resolve().parent.parent
var_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
any_text = st.text(max_size=40)


def write(tmp_path: Path, text: str, name: str = "airisd.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- ${VAR} substitution -----------------------------------------------------------------------


@given(st.text(st.characters(exclude_characters="$", codec="utf-8"), max_size=60))
def test_strings_without_dollar_are_unchanged(text: str) -> None:
    assert substitute(text, {}) == text
    assert substitute({"a": [text, {"b": text}]}, {}) == {"a": [text, {"b": text}]}


@given(var_names, any_text, any_text, any_text)
def test_substituted_values_equal_the_environment(name: str, value: str, before: str, after: str) -> None:
    """The value is inserted as is: a ``$`` or ``${X}`` inside it is not substituted again."""
    before, after = before.replace("$", ""), after.replace("$", "")
    env = {name: value}
    assert substitute("${" + name + "}", env) == value
    assert substitute(before + "${" + name + "}" + after, env) == before + value + after
    if value:
        assert substitute("${" + name + ":-fallback}", env) == value


@given(var_names, st.text(st.characters(exclude_characters="}$", codec="utf-8"), max_size=30))
def test_default_applies_when_unset_or_empty(name: str, default: str) -> None:
    assert substitute("${" + name + ":-" + default + "}", {}) == default
    assert substitute("${" + name + ":-" + default + "}", {name: ""}) == default
    # ${VAR-default} (no colon), as in the shell: only an unset variable takes the default.
    assert substitute("${" + name + "-" + default + "}", {name: ""}) == ""
    assert substitute("${" + name + "-" + default + "}", {}) == default


@given(st.text(st.characters(exclude_characters="$", codec="utf-8"), max_size=20))
def test_double_dollar_is_a_literal_dollar(text: str) -> None:
    assert substitute("$$" + text + "$${HOME}", {"HOME": "/root"}) == "$" + text + "${HOME}"


def test_lone_dollar_and_non_strings_are_left_alone() -> None:
    assert substitute("costs $5 or $HOME", {"HOME": "x"}) == "costs $5 or $HOME"
    assert substitute({"n": 3, "f": 1.5, "b": True, "l": [1, "${A}"]}, {"A": "a"}) == {
        "n": 3,
        "f": 1.5,
        "b": True,
        "l": [1, "a"],
    }


def test_unset_variable_without_default_names_it_and_the_key() -> None:
    with pytest.raises(ConfigError) as exc:
        substitute({"auth": {"jwt_secret": "${JWT_SECRET}"}}, {})
    assert "JWT_SECRET" in str(exc.value)
    assert "auth.jwt_secret" in str(exc.value)


def test_substitution_happens_in_loaded_files(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\ndata_dir = "${DD:-/default}"\nhostname = "${HN}"\n')
    config = build_config(tomllib.loads(path.read_text()), source=str(path), environ={"HN": "web-01"})
    assert config.agent.data_dir == "/default"
    assert config.agent.hostname == "web-01"


# -- typos and bad values name the key and the file ------------------------------------------------


def test_agent_key_typo_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\ndata_dri = "x"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, dotenv=None)
    assert "data_dri" in str(exc.value)
    assert str(path) in str(exc.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[bogus]\nx = 1\n", ["bogus"]),
        ("[http]\nmax_body_byte = 1\n", ["max_body_byte", "http"]),
        ('[listeners.metrics]\naddres = "127.0.0.1:1"\n', ["addres"]),
        ('[agent]\nshutdown_timeout_secs = "soon"\n', ["shutdown_timeout_secs"]),
        ('[agent]\nlog_format = "xml"\n', ["log_format", "xml"]),
        ('[agent]\nlog_level = "loud"\n', ["log_level", "loud"]),
        ("[agent]\nshutdown_timeout_secs = 0\n", ["shutdown_timeout_secs"]),
        ("[http]\nmax_body_bytes = 10\n", ["max_body_bytes"]),
        ('[listeners.metrics]\naddress = "localhost"\n', ["listeners.metrics.address", "localhost"]),
        ('[listeners.metrics]\naddress = "127.0.0.1:99999"\n', ["listeners.metrics.address", "99999"]),
        ('[listeners.metrics]\naddress = "127.0.0.1:http"\n', ["listeners.metrics.address"]),
        ('[listeners.metric]\naddress = "127.0.0.1:1"\n', ["listeners.metric"]),
        ('[listeners.metrics]\naddress = "127.0.0.1:1"\ntls_cert_file = "c.pem"\n', ["tls_key_file"]),
        ('[agent]\nrole = "metric"\n', ["role", "metric"]),
        ('[agent]\nrole = ""\n', ["role"]),
        ("inputs = 3\n", ["inputs"]),
        ("[inputs]\nhttp_metrics = 3\n", ["inputs.http_metrics"]),
        ("[agent\n", ["TOML"]),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path, dotenv=None)
    message = str(exc.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config sample"):
        load_config(tmp_path / "nope.toml", dotenv=None)


def test_unknown_plugin_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f'[agent]\nrole = "metrics"\ndata_dir = "{tmp_path}"\n'
        "[[inputs.http_metrics]]\n[[outputs.sqlite]]\nretention_dayz = 3\n",
    )
    config = load_config(path, dotenv=None)  # the core cannot know plugin keys...
    with pytest.raises(ConfigError) as exc:
        Daemon(config, build_registry()).build()  # ...the plugin's Config does
    assert "retention_dayz" in str(exc.value)
    assert str(path) in str(exc.value)
    assert "outputs.sqlite" in str(exc.value)


def test_bad_plugin_value_names_the_plugin_and_the_value() -> None:
    cls = build_registry().get("output", "sqlite").cls
    with pytest.raises(ConfigError) as exc:
        plugin_config(cls, {"durability": "sometimes"}, where="f.toml: [[outputs.sqlite]]")
    assert "f.toml: [[outputs.sqlite]]" in str(exc.value)
    assert "sometimes" in str(exc.value)
    with pytest.raises(ConfigError, match="retention_days"):
        plugin_config(cls, {"retention_days": "long"}, where="f.toml")


def test_unknown_plugin_name_lists_the_installed_ones(tmp_path: Path) -> None:
    config = build_config(
        {"agent": {"role": "metrics", "data_dir": str(tmp_path)}, "outputs": {"sqlit": [{}]}},
        source="f.toml",
        environ={},
    )
    with pytest.raises(ConfigError) as exc:
        Daemon(config, build_registry()).build()
    assert "sqlit" in str(exc.value)
    assert "sqlite" in str(exc.value)


def test_second_instance_is_named_by_its_number(tmp_path: Path) -> None:
    config = build_config(
        {
            "agent": {"role": "metrics", "data_dir": str(tmp_path)},
            "outputs": {"sqlite": [{}, {"batch_size": 0}]},
        },
        source="f.toml",
        environ={},
    )
    with pytest.raises(ConfigError, match=r"\[\[outputs.sqlite\]\] #2.*batch_size"):
        Daemon(config, build_registry()).build()


# -- --set overrides -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1),
        ("-2", -2),
        ("1.5", 1.5),
        ("true", True),
        ("false", False),
        ('"x y"', "x y"),
        ("plain", "plain"),
        ("/var/lib/airisd", "/var/lib/airisd"),
        ("[1, 2]", [1, 2]),
        ('["a"]', ["a"]),
        ("", ""),
        ("127.0.0.1:8001", "127.0.0.1:8001"),
        ("{a = 1}", {"a": 1}),
    ],
)
def test_set_values_are_toml_when_they_parse_else_strings(text: str, value: object) -> None:
    assert parse_set_value(text) == value


def test_set_overrides_file_values_and_types(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nlog_level = "info"\n[http]\nmax_body_bytes = 4096\n')
    config = load_config(
        path,
        dotenv=None,
        overrides=[
            "agent.log_level=debug",
            "http.max_body_bytes=2048",
            "agent.shutdown_timeout_secs=2.5",
            "agent.hostname=web 01",
            'http.cors_allow_origins=["https://a"]',
            "listeners.metrics.address=[::1]:9001",
        ],
    )
    assert config.agent.log_level == "debug"
    assert config.http.max_body_bytes == 2048
    assert config.agent.shutdown_timeout_secs == 2.5
    assert config.agent.hostname == "web 01"
    assert config.http.cors_allow_origins == ["https://a"]
    assert parse_address(config.listeners["metrics"].address, where="x") == ("::1", 9001)


def test_set_reaches_plugin_instances() -> None:
    data = {"outputs": {"sqlite": [{"alias": "a"}, {"alias": "b"}]}}
    config = build_config(
        data,
        source="f",
        environ={},
        overrides=[
            "outputs.sqlite.retention_days=7",
            "outputs.sqlite.1.durability=full",
            "outputs.sqlite.0.batch_size=10",
            "inputs.http_metrics.max_labels=8",
        ],
    )
    a, b = config.outputs["sqlite"]
    assert a == {"alias": "a", "retention_days": 7, "batch_size": 10}
    assert b == {"alias": "b", "retention_days": 7, "durability": "full"}
    assert config.inputs["http_metrics"] == [{"max_labels": 8}]


def test_set_typo_is_caught_like_a_file_typo() -> None:
    with pytest.raises(ConfigError, match="data_dri"):
        build_config({}, source="f", environ={}, overrides=["agent.data_dri=/x"])


@pytest.mark.parametrize(
    "assignment",
    ["agent.log_level", "=x", " =x", "outputs.sqlite.5.x=1", "outputs.sqlite.0=1", "agent.role.x=1"],
)
def test_bad_set_assignments(assignment: str) -> None:
    data = {"agent": {"role": "all"}, "outputs": {"sqlite": [{}]}}
    with pytest.raises(ConfigError, match="--set"):
        apply_set(data, assignment)


def test_role_and_data_dir_flags_win_over_set_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[agent]\nrole = "log"\ndata_dir = "/a"\n')
    config = load_config(
        path, dotenv=None, overrides=["agent.data_dir=/b"], role="metrics,trace", data_dir="/c"
    )
    assert config.roles() == ["metrics", "trace"]
    assert config.agent.data_dir == "/c"


# -- .env ----------------------------------------------------------------------------------------


def test_dotenv_fills_only_what_the_environment_lacks(tmp_path: Path) -> None:
    dotenv = write(
        tmp_path,
        "\n".join(
            [
                "# comment",
                "",
                "JWT_SECRET=from-file",
                "export API_RATE_LIMIT=100",
                'SMTP_USER="quoted user"',
                "SMTP_PASS='single # not a comment'",
                "SLACK_CHANNEL=#alerts",
                "CLICKHOUSE_HOST=ch # trailing comment",
                "not a line",
                "1BAD=x",
                "EMPTY=",
            ]
        ),
        ".env",
    )
    env = {"JWT_SECRET": "from-env"}
    found = load_dotenv(dotenv, env)
    assert env["JWT_SECRET"] == "from-env"  # the real environment wins
    assert found["JWT_SECRET"] == "from-file"
    assert env["API_RATE_LIMIT"] == "100"
    assert env["SMTP_USER"] == "quoted user"
    assert env["SMTP_PASS"] == "single # not a comment"
    assert env["SLACK_CHANNEL"] == "#alerts"
    assert env["CLICKHOUSE_HOST"] == "ch"
    assert env["EMPTY"] == ""
    assert "1BAD" not in env
    assert load_dotenv(tmp_path / "missing.env", env) == {}


def test_load_config_reads_dotenv_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {"AIRISD_DATA_DIR": "/from-env"})
    write(tmp_path, "AIRISD_DATA_DIR=/from-dotenv\nAIRISD_ROLE=metrics\n", ".env")
    path = write(tmp_path, '[agent]\nrole = "${AIRISD_ROLE:-all}"\ndata_dir = "${AIRISD_DATA_DIR:-./var}"\n')
    config = load_config(path, dotenv=tmp_path / ".env")
    assert config.agent.data_dir == "/from-env"
    assert config.roles() == ["metrics"]


def test_seed_env_example_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped .env.example (the seed's variable names) works with the shipped config."""
    monkeypatch.setattr(os, "environ", {})
    config = load_config(ROOT / "etc" / "airisd.toml", dotenv=ROOT / ".env.example", data_dir=str(tmp_path))
    assert config.roles() == list(ROLES)


# -- roles and addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        ("all", list(ROLES)),
        ("metrics", ["metrics"]),
        ("trace, metrics", ["metrics", "trace"]),
        ("alert,log,alert", ["log", "alert"]),
    ],
)
def test_roles(text: str, roles: list[str]) -> None:
    assert parse_roles(text) == roles


@pytest.mark.parametrize("text", ["", ",", "metric", "all,metrics", "METRICS", "metrics;log"])
def test_bad_roles(text: str) -> None:
    with pytest.raises(ConfigError, match="role"):
        parse_roles(text)


@pytest.mark.parametrize(
    ("text", "addr"),
    [
        ("127.0.0.1:8001", ("127.0.0.1", 8001)),
        (":8001", ("0.0.0.0", 8001)),
        ("[::1]:8001", ("::1", 8001)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_addresses(text: str, addr: tuple[str, int]) -> None:
    assert parse_address(text, where="x") == addr


@pytest.mark.parametrize("text", ["", "8001", "host:", "host:port", "host:65536", "host:-1", "host:80 "])
def test_bad_addresses_name_where(text: str) -> None:
    with pytest.raises(ConfigError, match=r"listeners\.metrics\.address"):
        parse_address(text, where="listeners.metrics.address")


# -- the shipped configuration ---------------------------------------------------------------------


def test_shipped_config_is_the_generated_sample() -> None:
    """etc/airisd.toml is `airisd config sample`: regenerate it with `make sample-config`."""
    assert (ROOT / "etc" / "airisd.toml").read_text(encoding="utf-8") == sample_config()


def test_shipped_config_builds_every_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "environ", {})
    config = load_config(ROOT / "etc" / "airisd.toml", dotenv=None, data_dir=str(tmp_path))
    assert config.roles() == list(ROLES)
    assert config.listeners["metrics"].address == "127.0.0.1:8001"
    daemon = Daemon(config, build_registry())
    daemon.build()
    assert {(i.section, i.name) for i in daemon.instances} >= {
        ("inputs", "http_metrics"),
        ("outputs", "sqlite"),
    }


def test_defaults_without_a_file() -> None:
    config = build_config({}, source="<defaults>", environ={})
    assert config.agent.data_dir == "./var"
    assert config.roles() == list(ROLES)
    assert {r: lc.address for r, lc in config.listeners.items()} == {
        "metrics": "127.0.0.1:8001",
        "log": "127.0.0.1:8002",
        "trace": "127.0.0.1:8003",
        "alert": "127.0.0.1:8004",
    }
