"""Unit tests of `runner.core.settings`: the config file and the environment, as read."""

import dataclasses
import json
import re
import socket
from pathlib import Path

import pytest

from runner.core.errors import ConfigError
from runner.core.passwords import hash_password
from runner.core.settings import (
    DEVELOPMENT_PASSWORD_HASH,
    DEVELOPMENT_WEBHOOK_SECRET,
    BuildSettings,
    GitHubSettings,
    ServerSettings,
    Settings,
    UiSettings,
    load_settings,
    parse_settings,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config" / "hobotnica.example.toml"

SECRET = "file-webhook-secret-0123456789"
MINIMAL = f'[github]\nwebhook_secret = "{SECRET}"\n'


def toml_string(value: str) -> str:
    """A TOML basic string holding `value` (JSON's escapes are a subset of TOML's)."""
    return json.dumps(value)


def write_config(tmp_path: Path, text: str, name: str = "hobotnica.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    return load_settings(write_config(tmp_path, text), environ or {})


def config_error(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, environ)
    return str(caught.value)


def project_config(body: str) -> str:
    return MINIMAL + "\n[[projects]]\n" + body + "\n"


# --- the example config -----------------------------------------------------------------------


def test_example_config_loads_with_the_development_secret() -> None:
    settings = load_settings(EXAMPLE_CONFIG, {})

    assert settings.github.webhook_secret == DEVELOPMENT_WEBHOOK_SECRET
    assert settings.github.uses_development_secret
    assert settings.github.token is None
    assert settings.server == ServerSettings(
        host="127.0.0.1", port=8081, public_url="http://127.0.0.1:8081"
    )
    assert settings.github.api_url == "https://api.github.com"
    assert settings.github.git_url == "https://github.com"
    # data_dir = "../var", relative to config/: the repository's var/ whatever the cwd.
    assert settings.data_dir.is_absolute()
    assert settings.data_dir.resolve() == REPO_ROOT / "var"
    assert settings.builds.concurrency == 2
    assert settings.builds.timeout == 3600
    assert settings.pull_requests.forks == "never"
    assert settings.projects == ()
    assert settings.config_path == EXAMPLE_CONFIG
    # Pages need a sign-in; the development user makes `make run` usable on loopback.
    assert not settings.ui.public
    assert settings.ui.has_development_user


def test_example_config_documents_every_key() -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    for table, cls in (("server", ServerSettings), ("builds", BuildSettings)):
        assert f"[{table}]" in text
        for f in dataclasses.fields(cls):
            assert re.search(rf"^#?\s*{f.name}\s*=", text, re.MULTILINE), f"{table}.{f.name}"
    assert "[ui]" in text
    for key in ("api_url", "git_url", "webhook_secret", "token", "data_dir", "forks", "public"):
        assert re.search(rf"^#?\s*{key}\s*=", text, re.MULTILINE), key


def test_webhook_secret_from_env_turns_off_the_development_warning() -> None:
    settings = load_settings(EXAMPLE_CONFIG, {"HOBOTNICA_WEBHOOK_SECRET": "a-real-secret-1234"})

    assert settings.github.webhook_secret == "a-real-secret-1234"
    assert not settings.github.uses_development_secret


# --- defaults ------------------------------------------------------------------------------------


def test_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)

    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8081
    assert settings.server.public_url == "http://127.0.0.1:8081"
    assert settings.github.api_url == "https://api.github.com"
    assert settings.github.git_url == "https://github.com"
    assert settings.github.token is None
    assert settings.data_dir == tmp_path.resolve() / "var"
    assert settings.builds.concurrency == 2
    assert settings.builds.timeout == 3600
    assert settings.builds.max_log_bytes == 64 * 1024 * 1024
    assert settings.builds.build_tags is False
    assert settings.pull_requests.forks == "never"
    assert settings.projects == ()


def test_public_url_loses_its_trailing_slash(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL + '[server]\npublic_url = "https://ci.example.com/"\n')

    # Otherwise every target_url would read https://ci.example.com//builds/1.
    assert settings.server.public_url == "https://ci.example.com"


def test_git_url_may_be_a_file_url(tmp_path: Path) -> None:
    remotes = tmp_path / "remotes"
    text = f'[github]\nwebhook_secret = "{SECRET}"\ngit_url = "{remotes.as_uri()}"\n'

    assert load(tmp_path, text).github.git_url == remotes.as_uri()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("api_url", "file:///srv/github"),
        ("api_url", "api.github.com"),
        ("git_url", "git@github.com:owner"),
        ("git_url", "ssh://github.com"),
    ],
)
def test_urls_with_the_wrong_scheme_are_refused(tmp_path: Path, key: str, value: str) -> None:
    text = f'[github]\nwebhook_secret = "{SECRET}"\n{key} = "{value}"\n'

    assert f"github.{key}" in config_error(tmp_path, text)


@pytest.mark.parametrize("key", ["api_url", "git_url"])
@pytest.mark.parametrize("scheme", ["https", "ssh"])
def test_credentials_in_a_url_are_refused_without_being_echoed(
    tmp_path: Path, key: str, scheme: str
) -> None:
    url = f"{scheme}://x-access-token:ghp_LeakedInUrl0123456789@github.com"
    message = config_error(tmp_path, f'[github]\nwebhook_secret = "{SECRET}"\n{key} = "{url}"\n')

    assert f"github.{key}" in message
    # The message goes to stderr and to journald: it must not carry the credential.
    assert "ghp_LeakedInUrl0123456789" not in message


# --- unknown keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('colour = "blue"\n' + MINIMAL, "colour"),
        (MINIMAL + '[server]\nhots = "0.0.0.0"\n', "server.hots"),
        (MINIMAL + 'secret = "x"\n', "github.secret"),
        (MINIMAL + '[storage]\ndatadir = "var"\n', "storage.datadir"),
        (MINIMAL + "[builds]\nconcurency = 4\n", "builds.concurency"),
        (MINIMAL + '[pull_requests]\nfork = "never"\n', "pull_requests.fork"),
        (MINIMAL + "[cache]\nsize = 1\n", "cache"),
        (MINIMAL + '[server.tls]\ncert = "x"\n', "server.tls"),
        (
            project_config('repository = "octo/app"\ndeploy-branch = "main"'),
            "projects[0].deploy-branch",
        ),
        (
            project_config(
                'repository = "octo/app"\n[[projects]]\nrepository = "octo/b"\nbranch = "x"'
            ),
            "projects[1].branch",
        ),
    ],
)
def test_unknown_key_is_an_error_naming_it(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(tmp_path, text)

    assert key in message
    assert "unknown" in message.lower()


def test_known_keys_are_all_accepted(tmp_path: Path) -> None:
    text = f"""
[server]
host = "192.0.2.10"
port = 9000
public_url = "https://ci.example.com"

[github]
api_url = "https://ghe.example.com/api/v3"
git_url = "https://ghe.example.com"
webhook_secret = "{SECRET}"
token = "ghp_filetoken"

[storage]
data_dir = "/srv/hobotnica"

[builds]
concurrency = 4
timeout = 90.5
kill_grace = 3
max_log_bytes = 1024
drain_timeout = 60
build_tags = true
sandbox = "bubblewrap"

[pull_requests]
forks = "without-secrets"

[[projects]]
repository = "octo/app"
deploy_branch = "release/2024"
env = {{ LEVEL = "production" }}
secrets = {{ COVERALLS_TOKEN = "coveralls-0123" }}
"""
    settings = load(tmp_path, text)

    assert settings.server == ServerSettings("192.0.2.10", 9000, "https://ci.example.com")
    assert settings.github.api_url == "https://ghe.example.com/api/v3"
    assert settings.github.git_url == "https://ghe.example.com"
    assert settings.github.token == "ghp_filetoken"
    assert settings.data_dir == Path("/srv/hobotnica")
    assert settings.builds == BuildSettings(4, 90.5, 3, 1024, 60, True, sandbox="bubblewrap")
    assert settings.pull_requests.forks == "without-secrets"
    (project,) = settings.projects
    assert project.repository == "octo/app"
    assert project.deploy_branch == "release/2024"
    assert dict(project.env) == {"LEVEL": "production"}
    assert dict(project.secrets) == {"COVERALLS_TOKEN": "coveralls-0123"}


# --- webhook secret and token: file and environment ---------------------------------------------


@pytest.mark.parametrize("text", ["", "[github]\n", '[github]\nwebhook_secret = ""\n'])
def test_missing_webhook_secret_is_an_error_naming_it(tmp_path: Path, text: str) -> None:
    message = config_error(tmp_path, text)

    assert "github.webhook_secret" in message
    assert "HOBOTNICA_WEBHOOK_SECRET" in message


def test_webhook_secret_may_come_from_the_environment_alone(tmp_path: Path) -> None:
    settings = load(tmp_path, "", {"HOBOTNICA_WEBHOOK_SECRET": "env-webhook-secret"})

    assert settings.github.webhook_secret == "env-webhook-secret"


def test_environment_wins_over_the_file_for_the_webhook_secret(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL, {"HOBOTNICA_WEBHOOK_SECRET": "env-webhook-secret"})

    assert settings.github.webhook_secret == "env-webhook-secret"


def test_environment_wins_over_the_file_for_the_token(tmp_path: Path) -> None:
    text = MINIMAL + 'token = "ghp_fromthefile"\n'

    assert load(tmp_path, text).github.token == "ghp_fromthefile"
    settings = load(tmp_path, text, {"HOBOTNICA_GITHUB_TOKEN": "ghp_fromtheenv"})
    assert settings.github.token == "ghp_fromtheenv"


def test_token_from_the_environment_alone(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL, {"HOBOTNICA_GITHUB_TOKEN": "ghp_fromtheenv"})

    assert settings.github.token == "ghp_fromtheenv"


def test_credentials_never_come_from_other_variables(tmp_path: Path) -> None:
    environ = {"GITHUB_TOKEN": "ghp_other", "WEBHOOK_SECRET": "other-secret"}
    settings = load(tmp_path, MINIMAL, environ)

    assert settings.github.token is None
    assert settings.github.webhook_secret == SECRET


def test_parse_settings_reads_the_environment_mapping_it_is_given(tmp_path: Path) -> None:
    raw = {"github": {"webhook_secret": SECRET, "token": "ghp_file"}}
    environ = {"HOBOTNICA_WEBHOOK_SECRET": "env-secret-xyz", "HOBOTNICA_GITHUB_TOKEN": "ghp_env"}

    settings = parse_settings(raw, environ, base_dir=tmp_path)

    assert settings.github.webhook_secret == "env-secret-xyz"
    assert settings.github.token == "ghp_env"
    assert settings.data_dir == tmp_path / "var"
    assert settings.config_path is None


# --- repository names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "noslash",
        "a/b/c",
        "../etc",
        "owner/..",
        "-rf/x",
        "owner/.hidden",
        "own er/x",
        "owner/",
        "/name",
        "",
        "owner/name\n",
        "owner/na;me",
        "ówner/name",
    ],
)
def test_malformed_repository_name_is_refused(tmp_path: Path, name: str) -> None:
    message = config_error(tmp_path, project_config(f"repository = {toml_string(name)}"))

    assert "projects[0].repository" in message


def test_malformed_repository_name_error_names_the_right_project(tmp_path: Path) -> None:
    text = project_config('repository = "octo/app"\n[[projects]]\nrepository = "../etc"')

    assert "projects[1].repository" in config_error(tmp_path, text)


def test_missing_or_non_string_repository_is_refused(tmp_path: Path) -> None:
    assert "projects[0].repository" in config_error(tmp_path, project_config('env = { A = "b" }'))
    assert "projects[0].repository" in config_error(tmp_path, project_config("repository = 5"))


@pytest.mark.parametrize("name", ["Codertocat/Hello-World", "a_b.c/d-e", "octo/app.js"])
def test_valid_repository_name_is_registered(tmp_path: Path, name: str) -> None:
    settings = load(tmp_path, project_config(f"repository = {toml_string(name)}"))

    assert [p.repository for p in settings.projects] == [name]
    project = settings.project(name.lower())  # GitHub names are case-insensitive
    assert project is not None
    assert project.repository == name
    assert project.deploy_branch is None
    assert settings.project("someone/else") is None


def test_a_repository_registered_twice_is_refused(tmp_path: Path) -> None:
    text = project_config('repository = "octo/app"\n[[projects]]\nrepository = "Octo/App"')

    assert "Octo/App" in config_error(tmp_path, text)


@pytest.mark.parametrize("branch", ["-x", "../main", "a b", "main.lock", "feat..x", "a\nb"])
def test_malformed_deploy_branch_is_refused(tmp_path: Path, branch: str) -> None:
    text = project_config(f'repository = "octo/app"\ndeploy_branch = {toml_string(branch)}')

    assert "projects[0].deploy_branch" in config_error(tmp_path, text)


def test_projects_must_be_an_array_of_tables(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL + '[projects]\nrepository = "octo/app"\n')

    assert "projects" in message


# --- types and ranges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "assignment", "key"),
    [
        ("server", 'port = "80"', "server.port"),
        ("server", "port = 80.5", "server.port"),
        ("server", "host = 127", "server.host"),
        ("server", 'public_url = "ci.example.com"', "server.public_url"),
        ("builds", "concurrency = true", "builds.concurrency"),
        ("builds", "concurrency = 1.5", "builds.concurrency"),
        ("builds", "concurrency = 0", "builds.concurrency"),
        ("builds", "timeout = -1", "builds.timeout"),
        ("builds", "timeout = 0", "builds.timeout"),
        ("builds", 'timeout = "1h"', "builds.timeout"),
        ("builds", "timeout = false", "builds.timeout"),
        ("builds", "kill_grace = -5", "builds.kill_grace"),
        ("builds", 'max_log_bytes = "64MiB"', "builds.max_log_bytes"),
        ("builds", "drain_timeout = 0", "builds.drain_timeout"),
        ("builds", 'build_tags = "yes"', "builds.build_tags"),
        ("builds", "build_tags = 1", "builds.build_tags"),
        ("storage", "data_dir = 5", "storage.data_dir"),
        ("pull_requests", "forks = true", "pull_requests.forks"),
    ],
)
def test_wrong_type_or_range_is_an_error_naming_the_key(
    tmp_path: Path, table: str, assignment: str, key: str
) -> None:
    assert key in config_error(tmp_path, f"{MINIMAL}[{table}]\n{assignment}\n")


def test_wrong_type_of_webhook_secret_or_token_names_the_key(tmp_path: Path) -> None:
    assert "github.webhook_secret" in config_error(tmp_path, "[github]\nwebhook_secret = 123456\n")
    assert "github.token" in config_error(tmp_path, MINIMAL + "token = true\n")


@pytest.mark.parametrize("table", ["server", "github", "storage", "builds", "pull_requests"])
def test_a_table_given_as_a_value_names_the_table(tmp_path: Path, table: str) -> None:
    environ = {"HOBOTNICA_WEBHOOK_SECRET": "env-webhook-secret"}

    assert table in config_error(tmp_path, f"{table} = 1\n", environ)


# --- paths ---------------------------------------------------------------------------------------


def test_relative_data_dir_is_relative_to_the_config_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(tmp_path / "etc", MINIMAL + '[storage]\ndata_dir = "state/db"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    # The path as a user types it in a shell, relative to where they stand.
    settings = load_settings(Path("../etc/hobotnica.toml"), {})

    assert settings.data_dir.is_absolute()
    assert settings.data_dir.resolve() == (tmp_path / "etc" / "state" / "db").resolve()


def test_relative_data_dir_may_climb_out_of_the_config_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", MINIMAL + '[storage]\ndata_dir = "../var"\n')

    settings = load_settings(config, {})

    assert settings.data_dir.is_absolute()
    assert settings.data_dir.resolve() == (tmp_path / "var").resolve()


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "absolute" / "data"
    settings = load(
        tmp_path / "conf", MINIMAL + f"[storage]\ndata_dir = {toml_string(str(target))}\n"
    )

    assert settings.data_dir == target


# --- project env and secrets ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["", "a", "12345"])
def test_a_secret_shorter_than_six_characters_is_refused(tmp_path: Path, value: str) -> None:
    text = project_config(f'repository = "octo/app"\nsecrets = {{ SHORTY = {toml_string(value)} }}')

    message = config_error(tmp_path, text)

    assert "projects[0].secrets.SHORTY" in message
    assert "6" in message


def test_a_six_character_secret_is_accepted(tmp_path: Path) -> None:
    text = project_config('repository = "octo/app"\nsecrets = { SIXISH = "123456" }')

    (project,) = load(tmp_path, text).projects
    assert dict(project.secrets) == {"SIXISH": "123456"}


@pytest.mark.parametrize("table", ["env", "secrets"])
@pytest.mark.parametrize("name", ["CI", "HOBOTNICA", "HOBOTNICA_X", "HOBOTNICA_BUILD_ID"])
def test_reserved_variable_names_are_refused(tmp_path: Path, table: str, name: str) -> None:
    text = project_config(f'repository = "octo/app"\n{table} = {{ {name} = "value-123" }}')

    message = config_error(tmp_path, text)

    assert f"projects[0].{table}.{name}" in message
    assert "reserved" in message


@pytest.mark.parametrize("table", ["env", "secrets"])
@pytest.mark.parametrize("name", ["FOO-BAR", "1ABC", "A B", "FOO\n", "PATH=x"])
def test_invalid_variable_names_are_refused(tmp_path: Path, table: str, name: str) -> None:
    text = project_config(
        f'repository = "octo/app"\n{table} = {{ {toml_string(name)} = "value-123" }}'
    )

    assert f"projects[0].{table}." in config_error(tmp_path, text)


@pytest.mark.parametrize("table", ["env", "secrets"])
def test_non_string_variable_values_are_refused(tmp_path: Path, table: str) -> None:
    text = project_config(f'repository = "octo/app"\n{table} = {{ LEVEL = 3 }}')

    assert f"projects[0].{table}.LEVEL" in config_error(tmp_path, text)


@pytest.mark.parametrize("table", ["env", "secrets"])
def test_env_and_secrets_must_be_tables(tmp_path: Path, table: str) -> None:
    text = project_config(f'repository = "octo/app"\n{table} = "LEVEL=production"')

    assert f"projects[0].{table}" in config_error(tmp_path, text)


def test_secret_values_do_not_appear_in_error_messages(tmp_path: Path) -> None:
    text = project_config('repository = "octo/app"\nsecrets = { PW = "hush1" }')

    assert "hush1" not in config_error(tmp_path, text)


# --- immutability and repr -----------------------------------------------------------------------


def full_settings(tmp_path: Path) -> Settings:
    text = (
        '[github]\nwebhook_secret = "whsec-TOPSECRET-456"\ntoken = "ghp_TOPSECRETTOKEN123"\n'
        '[[projects]]\nrepository = "octo/app"\nsecrets = { DEPLOY_KEY = "deploy-TOPSECRET-789" }\n'
    )
    return load(tmp_path, text)


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = full_settings(tmp_path)

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.data_dir = tmp_path  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.github.token = "ghp_replaced"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.builds.concurrency = 100  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.pull_requests.forks = "without-secrets"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.projects[0].repository = "evil/repo"  # type: ignore[misc]
    assert settings.github.token == "ghp_TOPSECRETTOKEN123"
    assert settings.builds.concurrency == 2


def test_repr_does_not_reveal_credentials(tmp_path: Path) -> None:
    settings = full_settings(tmp_path)
    assert settings.github.token == "ghp_TOPSECRETTOKEN123"  # the values are really there

    for text in (repr(settings), str(settings), repr(settings.github), str(settings.github)):
        assert "TOPSECRET" not in text
    assert "DEPLOY_KEY" not in repr(settings.projects[0])
    assert "octo/app" in repr(settings)  # still useful for debugging


def test_github_settings_repr_does_not_reveal_credentials() -> None:
    github = GitHubSettings(webhook_secret="whsec-plain-secret", token="ghp_plaintoken")

    assert "whsec-plain-secret" not in repr(github)
    assert "ghp_plaintoken" not in repr(github)
    assert "https://api.github.com" in repr(github)


def test_credentials_from_the_environment_are_not_in_repr(tmp_path: Path) -> None:
    environ = {
        "HOBOTNICA_WEBHOOK_SECRET": "env-TOPSECRET-webhook",
        "HOBOTNICA_GITHUB_TOKEN": "ghp_env_TOPSECRET",
        "PATH": "/usr/bin",
    }
    settings = load(tmp_path, "", environ)

    assert "TOPSECRET" not in repr(settings)


# --- inherited environment -----------------------------------------------------------------------


def test_inherited_env_keeps_only_the_allowlist(tmp_path: Path) -> None:
    kept = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/var/lib/hobotnica",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "LC_CTYPE": "en_US.UTF-8",
        "TZ": "Europe/Ljubljana",
        "TMPDIR": "/var/tmp",
    }
    dropped = {
        "HOBOTNICA_WEBHOOK_SECRET": "env-webhook-secret",
        "HOBOTNICA_GITHUB_TOKEN": "ghp_daemontoken",
        "VIRTUAL_ENV": "/opt/venv",
        "PYTHONPATH": "/opt/lib",
        "POETRY_HOME": "/opt/poetry",
        "AWS_SECRET_ACCESS_KEY": "daemon-only",
        "SSH_AUTH_SOCK": "/run/ssh.sock",
        "LANGUAGE": "sl",
        "PATHEXT": ".EXE",
        "HOMEBREW": "1",
        "path": "/tmp/evil",
        "XLC_ALL": "x",
        "LCOV_HOME": "/opt/lcov",
        "CI": "true",
    }

    settings = load(tmp_path, MINIMAL, {**kept, **dropped})

    assert dict(settings.inherited_env) == kept


def test_inherited_env_is_empty_for_an_empty_environment(tmp_path: Path) -> None:
    assert dict(load(tmp_path, MINIMAL, {}).inherited_env) == {}


# --- pull requests from forks --------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["never", "without-secrets"])
def test_fork_policy_accepts_the_documented_values(tmp_path: Path, policy: str) -> None:
    sandboxed = '[builds]\nsandbox = "bubblewrap"\n'
    settings = load(tmp_path, MINIMAL + sandboxed + f'[pull_requests]\nforks = "{policy}"\n')

    assert settings.pull_requests.forks == policy


def test_forks_with_code_running_need_the_sandbox(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL + '[pull_requests]\nforks = "without-secrets"\n')

    assert "pull_requests.forks" in message and 'builds.sandbox = "bubblewrap"' in message


@pytest.mark.parametrize("policy", ["always", "Never", "with-secrets", "", "yes"])
def test_fork_policy_refuses_anything_else(tmp_path: Path, policy: str) -> None:
    message = config_error(tmp_path, MINIMAL + f'[pull_requests]\nforks = "{policy}"\n')

    assert "pull_requests.forks" in message


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).server.event_loop == "uvloop"
    asked = load(tmp_path, MINIMAL + '[server]\nevent_loop = "asyncio"\n')
    assert asked.server.event_loop == "asyncio"
    message = config_error(tmp_path, MINIMAL + '[server]\nevent_loop = "trio"\n')
    assert "server.event_loop" in message and "'uvloop' or 'asyncio'" in message


# --- the file itself -----------------------------------------------------------------------------


def test_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load_settings(missing, {})

    assert str(missing) in str(caught.value)


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[github\nwebhook_secret = \n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})

    assert str(path) in str(caught.value)
    assert "TOML" in str(caught.value)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[github]\nwebhook_secret = "caf\xe9-secret-123"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})

    assert str(path) in str(caught.value)


def test_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path, {})

    assert str(tmp_path) in str(caught.value)


def test_config_path_is_recorded(tmp_path: Path) -> None:
    path = write_config(tmp_path, MINIMAL)

    assert load_settings(path, {}).config_path == path


# --- [ui]: who may look at the pages ----------------------------------------------------------

# Cheap parameters: the format carries them, and tests need not pay 128 MiB per hash.
ALICE_HASH = hash_password("correct horse battery", n=2**4, r=1, p=1)


def test_pages_are_private_with_no_users_by_default(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)

    assert settings.ui == UiSettings(public=False, users={})


def test_ui_users_and_public_are_read(tmp_path: Path) -> None:
    settings = load(
        tmp_path, MINIMAL + f'[ui]\npublic = true\nusers = {{ alice = "{ALICE_HASH}" }}\n'
    )

    assert settings.ui.public
    assert dict(settings.ui.users) == {"alice": ALICE_HASH}
    assert ALICE_HASH not in repr(settings)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("colour = true", "ui.colour"),
        ('public = "yes"', "ui.public"),
        ('users = "alice"', "ui.users"),
        ('users = { "al ice" = "x" }', "ui.users"),
    ],
)
def test_ui_mistakes_name_the_key(tmp_path: Path, body: str, key: str) -> None:
    assert key in config_error(tmp_path, MINIMAL + f"[ui]\n{body}\n")


def test_a_password_where_its_hash_belongs_is_refused_without_echoing_it(tmp_path: Path) -> None:
    message = config_error(tmp_path, MINIMAL + '[ui]\nusers = { alice = "hunter2-plain" }\n')

    assert "ui.users.alice" in message
    assert "hash-password" in message
    assert "hunter2-plain" not in message


def test_the_development_user_is_refused_off_loopback(tmp_path: Path) -> None:
    users = f'[ui]\nusers = {{ dev = "{DEVELOPMENT_PASSWORD_HASH}" }}\n'
    on_loopback = MINIMAL + '[server]\npublic_url = "http://localhost:8081"\n' + users
    reachable = MINIMAL + '[server]\npublic_url = "https://ci.example.com"\n' + users

    assert load(tmp_path, on_loopback).ui.has_development_user
    message = config_error(tmp_path, reachable)
    assert "ui.users.dev" in message and "loopback" in message


# --- every problem at once (`hobotnica check-config` names them all) ---------------------------

MANY_MISTAKES = f"""
[server]
port = "8081"

[github]
webhook_secret = "{SECRET}"
tokne = "ghp_x"

[builds]
timeout = 0
sandbox = "docker"

[[projects]]
repository = "../etc"
secrets = {{ SHORT = "abc", CI = "value-123" }}
"""


def test_every_problem_is_listed_one_a_line_naming_the_file(tmp_path: Path) -> None:
    message = config_error(tmp_path, MANY_MISTAKES)

    header, *lines = message.splitlines()
    assert header == f"7 problems in {tmp_path / 'hobotnica.toml'}:"
    # In the order of the file; each line names its key.
    assert [line.strip() for line in lines] == [
        "server.port must be an integer, not a string",
        "unknown key github.tokne (did you mean github.token?)",
        "builds.timeout must be greater than 0",
        "builds.sandbox must be 'none' or 'bubblewrap', not 'docker'",
        "projects[0].repository '../etc' is not a valid repository name (owner/name)",
        "projects[0].secrets.SHORT is shorter than 6 characters: too short to mask in logs safely",
        "projects[0].secrets.CI: that name is reserved for Hobotnica",
    ]
    assert "abc" not in message  # a secret's value is never echoed, even in a list


def test_a_single_problem_is_the_message_alone(tmp_path: Path) -> None:
    assert config_error(tmp_path, MINIMAL + "[builds]\ntimeout = 0\n") == (
        "builds.timeout must be greater than 0"
    )


def test_rules_between_tables_are_listed_with_the_keys_problems(tmp_path: Path) -> None:
    text = MINIMAL + '[builds]\ntimeout = 0\n[pull_requests]\nforks = "without-secrets"\n'

    lines = config_error(tmp_path, text).splitlines()[1:]

    assert [line.strip().split(" ", 1)[0] for line in lines] == [
        "builds.timeout",
        "pull_requests.forks",
    ]


def test_a_key_refused_does_not_hide_its_neighbours(tmp_path: Path) -> None:
    text = MINIMAL + '[server]\nport = true\ntrusted_proxies = ["10.0.0.1", "proxy", 5]\n'

    message = config_error(tmp_path, text)

    assert "server.port must be an integer, not a boolean" in message
    assert "server.trusted_proxies: 'proxy' is not an IP address" in message
    assert "server.trusted_proxies[2] must be a string, not an integer" in message


def test_parse_settings_without_a_file_lists_the_problems_too(tmp_path: Path) -> None:
    raw = {"builds": {"concurrency": 0, "kill_grace": -1}}

    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, {}, base_dir=tmp_path)

    assert str(caught.value).splitlines() == [
        "3 problems:",
        "  builds.concurrency must be greater than 0",
        "  builds.kill_grace must be greater than 0",
        "  github.webhook_secret is missing: set it in the config file or in the environment "
        "variable HOBOTNICA_WEBHOOK_SECRET",
    ]


# --- "did you mean" ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            MINIMAL + "[builds]\ntimout = 60\n",
            "unknown key builds.timout (did you mean builds.timeout?)",
        ),
        ("[bulids]\ntimeout = 60\n" + MINIMAL, "unknown key bulids (did you mean builds?)"),
        (
            MINIMAL + "[storage]\ndatadir = 'var'\n",
            "unknown key storage.datadir (did you mean storage.data_dir?)",
        ),
        (
            project_config('repository = "octo/app"\ndeploy-branch = "main"'),
            "unknown key projects[0].deploy-branch (did you mean projects[0].deploy_branch?)",
        ),
    ],
)
def test_a_misspelt_key_gets_a_suggestion(tmp_path: Path, text: str, expected: str) -> None:
    assert config_error(tmp_path, text) == expected


def test_a_key_like_no_other_gets_no_suggestion(tmp_path: Path) -> None:
    assert config_error(tmp_path, MINIMAL + "[builds]\ncolour = 1\n") == "unknown key builds.colour"


def test_keys_read_elsewhere_are_not_keys_of_the_file(tmp_path: Path) -> None:
    # A project's timeout and token are set through the API; inherited_env is the daemon's own.
    assert "unknown key projects[0].timeout" in config_error(
        tmp_path, project_config('repository = "octo/app"\ntimeout = 60')
    )
    assert "unknown key inherited_env" in config_error(
        tmp_path, 'inherited_env = { PATH = "/tmp" }\n' + MINIMAL
    )


# --- the webhook secret's length -----------------------------------------------------------------


def reachable(secret: str) -> str:
    return (
        f'[server]\npublic_url = "https://ci.example.com"\n[github]\nwebhook_secret = "{secret}"\n'
    )


@pytest.mark.parametrize("secret", ["tiny-s3cret", "fifteen-chars15"])
def test_a_short_webhook_secret_is_refused_when_reachable(tmp_path: Path, secret: str) -> None:
    message = config_error(tmp_path, reachable(secret))

    assert "github.webhook_secret" in message and "16 characters" in message
    assert "loopback" in message
    assert secret not in message


def test_a_short_webhook_secret_from_the_environment_is_refused_too(tmp_path: Path) -> None:
    text = '[server]\npublic_url = "https://ci.example.com"\n'

    message = config_error(tmp_path, text, {"HOBOTNICA_WEBHOOK_SECRET": "short-secret"})

    assert "HOBOTNICA_WEBHOOK_SECRET" in message and "16 characters" in message


def test_a_sixteen_character_webhook_secret_is_accepted_when_reachable(tmp_path: Path) -> None:
    settings = load(tmp_path, reachable("sixteen-chars-16"))

    assert settings.github.webhook_secret == "sixteen-chars-16"


@pytest.mark.parametrize(
    "public_url", ["http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"]
)
def test_a_short_webhook_secret_is_accepted_on_loopback(tmp_path: Path, public_url: str) -> None:
    text = f'[server]\npublic_url = "{public_url}"\n[github]\nwebhook_secret = "dev"\n'

    assert load(tmp_path, text).github.webhook_secret == "dev"


def test_a_short_webhook_secret_is_refused_when_listening_on_every_address(
    tmp_path: Path,
) -> None:
    # No public_url: it is http://{host}:{port}, here reachable from the network.
    text = '[server]\nhost = "0.0.0.0"\n[github]\nwebhook_secret = "dev"\n'

    assert "github.webhook_secret" in config_error(tmp_path, text)


@pytest.mark.parametrize("name", ["build/1", "-build", "a b", "x" * 65, "node\n"])
def test_a_node_name_that_cannot_name_a_lease_owner_is_refused(tmp_path: Path, name: str) -> None:
    message = config_error(tmp_path, f"[server]\nnode_name = {toml_string(name)}\n" + MINIMAL)
    assert "server.node_name" in message


def test_a_node_is_named_by_its_host_and_port_unless_it_has_a_name(tmp_path: Path) -> None:
    unnamed = load(tmp_path, "[server]\nport = 8090\n" + MINIMAL)
    assert unnamed.server.node == f"{socket.gethostname()}:8090"
    named = load(tmp_path, '[server]\nnode_name = "build-2.example:8081"\n' + MINIMAL)
    assert named.server.node == "build-2.example:8081"


def test_a_database_url_names_postgresql_or_nothing(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL).database_url is None  # the embedded SQLite
    url = "postgresql://hobotnica@db.internal:5432/hobotnica?sslmode=require"
    assert load(tmp_path, f'[storage]\ndatabase_url = "{url}"\n' + MINIMAL).database_url == url
    from_env = load(tmp_path, MINIMAL, {"HOBOTNICA_DATABASE_URL": url})
    assert from_env.database_url == url
    message = config_error(tmp_path, '[storage]\ndatabase_url = "mysql://db/x"\n' + MINIMAL)
    assert "storage.database_url must be a postgresql:// URL" in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hobotnica:hunter2-secret@db/hobotnica",
        "postgresql://hobotnica@db/hobotnica?sslmode=require&password=hunter2-secret",
        "postgres://db/hobotnica?PASSWORD=hunter2-secret",
    ],
)
def test_a_password_in_the_database_url_is_refused_without_echoing_it(
    tmp_path: Path, url: str
) -> None:
    message = config_error(tmp_path, f'[storage]\ndatabase_url = "{url}"\n' + MINIMAL)
    assert "must not carry a password" in message and ".pgpass" in message
    assert "hunter2" not in message
