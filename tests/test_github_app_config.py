"""The GitHub App's key and id in the config, as a user meets them: `hobotnica check-config`
(the real console script), and the App's tokens as GitHub hands them out over time."""

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from runner.core.github_identity import TOKEN_MARGIN, GitHubApp
from tests.support.fake_github import FakeGitHub
from tests.test_check_config import (
    SECRET,
    assert_refused,
    clean_environment,
    hobotnica_script,
    write_config,
)


def app_config(key_file: Path, app_id: int = 4242, api_url: str = "https://api.github.com") -> str:
    return f"""
[server]
public_url = "https://ci.example.com"

[github]
webhook_secret = "{SECRET}"
app_id = {app_id}
private_key_file = "{key_file}"
api_url = "{api_url}"
auto_register = true

[api]
allowed_owners = ["octo-org"]
"""


async def check_config(config: Path, *options: str, **environ: str) -> tuple[int, str, str]:
    """The real script, run while the test's event loop keeps serving the fake GitHub."""
    process = await asyncio.create_subprocess_exec(
        hobotnica_script(),
        "check-config",
        "--config",
        str(config),
        *options,
        env=clean_environment(**environ),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def write_key(tmp_path: Path, pem: str, mode: int = 0o600) -> Path:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    key_file.chmod(mode)
    return key_file


async def test_a_key_others_may_read_is_refused_naming_the_file_and_its_mode(
    tmp_path: Path,
) -> None:
    app = FakeGitHub().enable_app()
    key_file = write_key(tmp_path, app.private_key_pem, mode=0o644)

    code, out, err = await check_config(write_config(tmp_path, app_config(key_file)))

    assert_refused(_completed(code, out, err), str(key_file), "mode 0644", f"chmod 600 {key_file}")


async def test_the_app_needs_its_key_and_the_key_must_be_an_rsa_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, app_config(write_key(tmp_path, "not a key\n")))
    code, out, err = await check_config(config)
    assert_refused(_completed(code, out, err), "not an unencrypted RSA private key in PEM format")

    without_key = f'[github]\nwebhook_secret = "{SECRET}"\napp_id = 12\n'
    code, out, err = await check_config(write_config(tmp_path, without_key))
    assert_refused(_completed(code, out, err), "github.app_id needs the App's private key")


async def test_check_runs_need_the_app(tmp_path: Path) -> None:
    config = (
        f'[github]\nwebhook_secret = "{SECRET}"\ntoken = "ghp_token_0123456789"\n'
        'report = "checks"\n'
    )
    code, out, err = await check_config(write_config(tmp_path, config))
    assert_refused(_completed(code, out, err), 'github.report = "checks" needs a GitHub App')


async def test_the_key_may_come_from_the_environment_and_is_never_printed(tmp_path: Path) -> None:
    app = FakeGitHub().enable_app()
    config = write_config(tmp_path, f'[github]\nwebhook_secret = "{SECRET}"\n')

    code, out, err = await check_config(
        config,
        HOBOTNICA_GITHUB_APP_ID=str(app.app_id),
        HOBOTNICA_GITHUB_APP_PRIVATE_KEY=app.private_key_pem,
    )

    assert code == 0, err
    assert f"GitHub App {app.app_id}" in out
    key_lines = [line for line in app.private_key_pem.splitlines() if "-----" not in line]
    assert not any(line in out + err for line in key_lines)


async def test_check_config_online_asks_github_whether_it_accepts_the_jwt(
    tmp_path: Path, aiohttp_server: Any
) -> None:
    fake = FakeGitHub()
    app = fake.enable_app()
    server = await aiohttp_server(fake.app(prefix="/api/v3"))
    api_url = str(server.make_url("/api/v3"))
    key_file = write_key(tmp_path, app.private_key_pem)

    code, out, err = await check_config(
        write_config(tmp_path, app_config(key_file, api_url=api_url)), "--online"
    )
    assert code == 0, err
    assert "GitHub accepts the App's JWT: hobotnica-test" in out
    assert ("GET", "/app", "jwt") in fake.requests

    # Another App's id with this key: GitHub refuses the JWT, and the check says so.
    wrong = write_config(tmp_path, app_config(key_file, app_id=99, api_url=api_url))
    code, out, err = await check_config(wrong, "--online")
    assert code == 1
    assert "GitHub refused the App's JWT" in out + err
    assert "Traceback" not in err


async def test_a_token_is_shared_and_fetched_again_shortly_before_it_expires(
    aiohttp_server: Any,
) -> None:
    fake = FakeGitHub()
    app = fake.enable_app()
    app.install(31, "octo-org", ["octo-org/one", "octo-org/two"])
    server = await aiohttp_server(fake.app())
    now = [app.now()]
    async with aiohttp.ClientSession() as session:
        github = GitHubApp(
            session,
            api_url=str(server.make_url("")).rstrip("/"),
            app_id=app.app_id,
            private_key=app.private_key_pem,
            clock=lambda: now[0],
        )
        # A burst of callers for two repositories of one installation: one token request.
        tokens = await asyncio.gather(
            *(github.token_for(f"octo-org/{name}") for name in ("one", "two") * 5)
        )
        assert set(tokens) == {app.issued[0]} and len(app.issued) == 1

        # From the token's own expiry: the fake stamps it with the wall clock when it issues
        # it, a second boundary after `now` was read now and then.
        expires = app.tokens[app.issued[0]].expires
        now[0] = expires - TOKEN_MARGIN - 1  # still well before its expiry
        assert await github.token_for("octo-org/one") == app.issued[0]

        now[0] += 2  # within the margin: a new one, before GitHub would refuse the old
        assert await github.token_for("octo-org/two") == app.issued[1]
    assert app.refused_tokens == [] and app.rejected_jwts == []


async def test_the_token_stands_in_only_for_the_configs_projects(aiohttp_server: Any) -> None:
    fake = FakeGitHub()
    app = fake.enable_app()
    server = await aiohttp_server(fake.app())
    async with aiohttp.ClientSession() as session:
        github = GitHubApp(
            session,
            api_url=str(server.make_url("")).rstrip("/"),
            app_id=app.app_id,
            private_key=app.private_key_pem,
            fallback_token="ghp_operators_own_token",
            may_fall_back=lambda repository: repository == "octo/configured",
        )
        # Not installed on either: the config's project keeps the token while moving to the
        # App; a repository an installation registered (and lost) gets nothing.
        assert await github.token_for("octo/configured") == "ghp_operators_own_token"
        assert await github.token_for("octo-org/registered") is None


def _completed(code: int, out: str, err: str) -> subprocess.CompletedProcess[str]:
    return subprocess.CompletedProcess(args=[], returncode=code, stdout=out, stderr=err)
