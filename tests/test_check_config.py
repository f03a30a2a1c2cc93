"""`hobotnica check-config --config FILE`: the real console script, run as a user runs it."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "config" / "hobotnica.example.toml"

SECRET = "check-config-webhook-secret-0123"
TOKEN = "ghp_checkconfigtoken0123456789"
DEPLOY_KEY = "deploy-key-0123456789"


def hobotnica_script() -> str:
    beside = Path(sys.executable).parent / "hobotnica"
    if beside.exists():
        return str(beside)
    found = shutil.which("hobotnica")
    assert found, "the hobotnica console script is not installed (make install)"
    return found


def clean_environment(**extra: str) -> dict[str, str]:
    """The test runner's environment without any Hobotnica variable a developer may have set."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HOBOTNICA")}
    environ.update(extra)
    return environ


def check_config(
    config: Path, cwd: Path, environ: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hobotnica_script(), "check-config", "--config", str(config)],
        cwd=cwd,
        env=environ if environ is not None else clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hobotnica.toml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_refused(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    assert "config OK" not in result.stdout
    for text in expected:
        assert text in result.stderr, (text, result.stderr)


GOOD_CONFIG = f"""
[server]
host = "127.0.0.1"
port = 8090
public_url = "https://ci.example.com"

[github]
webhook_secret = "{SECRET}"
token = "{TOKEN}"

[storage]
data_dir = "state"

[[projects]]
repository = "Codertocat/Hello-World"
secrets = {{ DEPLOY_KEY = "{DEPLOY_KEY}" }}

[[projects]]
repository = "octo/app"
"""


def test_example_config_is_accepted_with_a_development_secret_warning(tmp_path: Path) -> None:
    result = check_config(EXAMPLE_CONFIG, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "WARNING" in output
    assert "development webhook secret" in output
    assert "Traceback" not in output


def test_example_config_with_secret_from_environment_has_no_warning(tmp_path: Path) -> None:
    environ = clean_environment(HOBOTNICA_WEBHOOK_SECRET="env-webhook-secret-0123")

    result = check_config(EXAMPLE_CONFIG, cwd=tmp_path, environ=environ)

    assert result.returncode == 0, result.stderr
    assert "development webhook secret" not in result.stdout + result.stderr


def test_good_config_is_accepted_and_summarised(tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    config = write_config(config_dir, GOOD_CONFIG)

    result = check_config(config, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "Codertocat/Hello-World" in result.stdout
    assert "octo/app" in result.stdout
    assert "https://ci.example.com" in result.stdout
    # data_dir = "state" lives beside the config file, not in the cwd.
    assert str(config_dir.resolve() / "state") in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_check_config_never_prints_credentials(tmp_path: Path) -> None:
    config = write_config(tmp_path, GOOD_CONFIG)

    result = check_config(config, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for credential in (SECRET, TOKEN, DEPLOY_KEY):
        assert credential not in output


@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param(
            ("[github]\n", f'[github]\ngit_url = "https://x-access-token:{TOKEN}@github.com"\n'),
            "github.git_url must not carry credentials",
            id="token-in-git-url",
        ),
        pytest.param(
            ("[github]\n", f'[github]\napi_url = "ftp://x-access-token:{TOKEN}@ghe.example"\n'),
            "github.api_url must not carry credentials",
            id="token-in-a-url-that-is-wrong-twice",
        ),
        pytest.param(
            ("token =", "tokne ="), "unknown key github.tokne", id="token-under-a-misspelt-key"
        ),
        pytest.param(
            (f'webhook_secret = "{SECRET}"', f'webhook_secret = ["{SECRET}"]'),
            "github.webhook_secret must be a string",
            id="secret-of-the-wrong-type",
        ),
        pytest.param(
            ("DEPLOY_KEY =", '"deploy-key" ='),
            "projects[0].secrets.deploy-key is not a valid environment variable name",
            id="project-secret-under-a-bad-name",
        ),
        pytest.param(
            (f'token = "{TOKEN}"', f'token = "{TOKEN}'),
            "TOML",
            id="toml-error-on-the-token-line",
        ),
    ],
)
def test_a_refused_config_never_prints_its_credentials(
    tmp_path: Path, change: tuple[str, str], named: str
) -> None:
    old, new = change
    assert old in GOOD_CONFIG
    config = write_config(tmp_path, GOOD_CONFIG.replace(old, new, 1))

    result = check_config(config, cwd=tmp_path)

    assert_refused(result, named)
    output = result.stdout + result.stderr
    for credential in (SECRET, TOKEN, DEPLOY_KEY):
        assert credential not in output


def test_missing_file_exits_1_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist.toml"

    result = check_config(missing, cwd=tmp_path)

    assert_refused(result, str(missing), "config error")


def test_invalid_toml_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[github\nwebhook_secret = "unterminated\n')

    result = check_config(config, cwd=tmp_path)

    assert_refused(result, str(config), "TOML")


def test_a_file_that_is_not_utf8_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes(b'[github]\nwebhook_secret = "caf\xe9-secret-0123"\n')

    result = check_config(config, cwd=tmp_path)

    assert_refused(result, str(config), "config error")


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[builds]\nconcurency = 4\n", "builds.concurency"),
        ("[server]\nprot = 8081\n", "server.prot"),
        ("[storage]\ndatadir = 'var'\n", "storage.datadir"),
        ("[[projects]]\nrepository = 'octo/app'\nbranch = 'main'\n", "projects[0].branch"),
    ],
)
def test_unknown_key_exits_1_naming_it(tmp_path: Path, extra: str, key: str) -> None:
    config = write_config(tmp_path, f'[github]\nwebhook_secret = "{SECRET}"\n{extra}')

    assert_refused(check_config(config, cwd=tmp_path), key)


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[server]\nport = "80"\n', "server.port"),
        ("[builds]\nconcurrency = true\n", "builds.concurrency"),
        ("[builds]\ntimeout = -1\n", "builds.timeout"),
        ('[pull_requests]\nforks = "always"\n', "pull_requests.forks"),
        ("[[projects]]\nrepository = '../etc'\n", "projects[0].repository"),
        (
            "[[projects]]\nrepository = 'octo/app'\nsecrets = { PW = 'abc' }\n",
            "projects[0].secrets.PW",
        ),
        ("[[projects]]\nrepository = 'octo/app'\nenv = { CI = 'no' }\n", "projects[0].env.CI"),
    ],
)
def test_invalid_value_exits_1_naming_the_key(tmp_path: Path, extra: str, key: str) -> None:
    config = write_config(tmp_path, f'[github]\nwebhook_secret = "{SECRET}"\n{extra}')

    assert_refused(check_config(config, cwd=tmp_path), key)


def test_missing_webhook_secret_exits_1_naming_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[server]\nport = 8081\n[github]\ntoken = "ghp_x"\n')

    assert_refused(check_config(config, cwd=tmp_path), "github.webhook_secret")


def test_webhook_secret_from_the_environment_satisfies_check_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[server]\nport = 8081\n")
    environ = clean_environment(HOBOTNICA_WEBHOOK_SECRET="env-webhook-secret-0123")

    result = check_config(config, cwd=tmp_path, environ=environ)

    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert "env-webhook-secret-0123" not in result.stdout + result.stderr


def test_check_config_says_when_bubblewrap_is_asked_for_but_not_usable(tmp_path: Path) -> None:
    config = tmp_path / "hobotnica.toml"
    config.write_text(
        '[github]\nwebhook_secret = "s3cr3t-value"\n[builds]\nsandbox = "bubblewrap"\n'
    )
    # A PATH without bwrap on it: as on a machine where the package is not installed.
    env = {"PATH": str(tmp_path / "no-such-bin"), "HOME": str(tmp_path)}
    result = subprocess.run(
        [hobotnica_script(), "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert 'builds.sandbox = "bubblewrap"' in result.stderr
    assert "bwrap is not installed" in result.stderr


def test_without_a_config_of_ones_own_the_commands_use_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's quickstart: `make run` (the example config), then `hobotnica try` with no
    # --config must reach the same daemon.
    from runner.cli.main import default_config

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "hobotnica.example.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert default_config() == Path("config/hobotnica.example.toml")

    (tmp_path / "config" / "hobotnica.toml").write_text("")
    assert default_config() == Path("config/hobotnica.toml")


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    text = GOOD_CONFIG.replace("port = 8090", 'port = "8090"').replace(
        "[storage]\n", "[storage]\nmin_fre = 0\n"
    )
    config = write_config(tmp_path, text + "\n[builds]\ntimout = 60\nconcurrency = 0\n")

    result = check_config(config, cwd=tmp_path)

    assert_refused(result, f"4 problems in {config}:")
    lines = result.stderr.splitlines()
    assert lines[0] == f"hobotnica: config error: 4 problems in {config}:"
    assert lines[1:] == [
        "  server.port must be an integer, not a string",
        "  unknown key storage.min_fre (did you mean storage.min_free?)",
        "  unknown key builds.timout (did you mean builds.timeout?)",
        "  builds.concurrency must be greater than 0",
    ]
    for credential in (SECRET, TOKEN, DEPLOY_KEY):
        assert credential not in result.stdout + result.stderr


def test_a_short_webhook_secret_is_refused_for_a_public_url(tmp_path: Path) -> None:
    # GOOD_CONFIG's public URL is https://ci.example.com: GitHub reaches it, so may anyone.
    config = write_config(tmp_path, GOOD_CONFIG.replace(SECRET, "short-secret-15"))

    result = check_config(config, cwd=tmp_path)

    assert_refused(result, "github.webhook_secret", "16 characters", "loopback")
    assert "short-secret-15" not in result.stdout + result.stderr


def test_a_short_webhook_secret_is_accepted_on_loopback(tmp_path: Path) -> None:
    text = GOOD_CONFIG.replace(SECRET, "short-secret-15").replace(
        "https://ci.example.com", "http://127.0.0.1:8090"
    )

    result = check_config(write_config(tmp_path, text), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout


def test_serve_refuses_a_config_with_the_same_full_list(tmp_path: Path) -> None:
    text = GOOD_CONFIG.replace("port = 8090", 'port = "8090"').replace("token =", "tokne =")
    config = write_config(tmp_path, text + "\n[biulds]\nconcurrency = 0\n")

    checked = check_config(config, cwd=tmp_path)
    served = subprocess.run(
        [hobotnica_script(), "serve", "--config", str(config)],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert_refused(served, f"3 problems in {config}:")
    assert served.stderr.splitlines()[1:] == [
        "  unknown key biulds (did you mean builds?)",
        "  server.port must be an integer, not a string",
        "  unknown key github.tokne (did you mean github.token?)",
    ]
    assert served.stderr == checked.stderr
    assert not (tmp_path / "state").exists()  # refused before it made its data directory


def test_what_the_host_cannot_give_is_named_all_at_once(tmp_path: Path) -> None:
    # A port bound but not listening: the database's connection is refused at once.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        config = write_config(
            tmp_path,
            f'[github]\nwebhook_secret = "{SECRET}"\n[builds]\nsandbox = "bubblewrap"\n'
            f'[storage]\ndatabase_url = "postgresql://hobotnica@127.0.0.1:{port}/hobotnica"\n',
        )
        # A PATH without bwrap on it: as on a machine where the package is not installed.
        environ = {"PATH": str(tmp_path / "no-such-bin"), "HOME": str(tmp_path)}

        result = check_config(config, cwd=tmp_path, environ=environ)

    assert_refused(result, f"2 problems in {config}:")
    first, second = result.stderr.splitlines()[1:]
    assert first.startswith('  builds.sandbox = "bubblewrap", but bwrap is not installed')
    assert second.startswith("  cannot reach storage.database_url")
