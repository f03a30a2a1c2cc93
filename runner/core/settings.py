"""Typed, frozen settings read once from a TOML file and the environment.

Each key is declared once, as a field of its table's dataclass: the field's name, type and default
are the key's, and `Annotated` adds its checks and, in a `Key(...)`, an environment variable that
wins over the file or the table it lives in (`runner.core.config_loading` reads them all the same
way). Loading fails closed: an unknown key, a missing webhook secret or a malformed repository name
raises `ConfigError` with a message that names the key, and every problem in a file is named at
once, one a line. Nothing else in the package reads `os.environ`: the part of the daemon's
environment that builds inherit is captured here.
"""

import dataclasses
import socket
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from runner.core.config_loading import (
    NOT_IN_FILE,
    Key,
    Reading,
    at_least,
    command,
    each,
    each_entry,
    ip_address,
    is_loopback_url,
    positive,
    read_table,
    url,
)
from runner.core.errors import ConfigError
from runner.core.notification_settings import NotificationSettings
from runner.core.setting_checks import (
    BuildUser,
    app_private_key,
    app_private_key_file,
    branch,
    build_user,
    cron_expression,
    github_owner,
    local_url,
    maskable,
    password_hash,
    port_pair,
    postgresql_url,
    registered_once,
    repository,
    time_zone,
    user_name,
    valid_node_name,
    variable_name,
    without_credentials,
)

# The example config's secret. It lets `make run` work before any config is written, and the
# daemon says loudly that it is not for production whenever it is in use.
DEVELOPMENT_WEBHOOK_SECRET = "hobotnica-development-secret-do-not-use-in-production"  # noqa: S105

# The example config's user `dev` (password `dev`), so that `make run` shows its pages at once. It
# is refused whenever server.public_url is not a loopback address: such a daemon is reachable by
# others, and everyone who has read the README knows this password.
DEVELOPMENT_USER = "dev"
DEVELOPMENT_PASSWORD_HASH = (
    "scrypt$131072$8$1$GKRTPCpholvuRw2B_ZTqrw$4a_MOq1cJaVMp64VE3wDphG85pVBwAUIs3y0fjHS3w8"  # noqa: S105
)

# The GitHub App's private key (PEM) may come through the environment instead of a file.
APP_KEY_VARIABLE = "HOBOTNICA_GITHUB_APP_PRIVATE_KEY"

# Builds inherit only these variables of the daemon's own environment (DESIGN.md).
INHERITED_ENV_NAMES = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
INHERITED_ENV_PREFIXES = ("LC_",)

# Whoever can reach the daemon may guess the webhook secret offline from one signed delivery they
# saw, or online; below this, only a daemon on a loopback address may have such a secret.
MIN_WEBHOOK_SECRET_LENGTH = 16
# Lower limits would not let `make` itself start.
MIN_MEMORY_MAX = 16 * 1024 * 1024
MIN_TASKS_MAX = 4

ForkPolicy = Literal["never", "without-secrets", "approve"]
SandboxKind = Literal["none", "bubblewrap"]
EventLoopKind = Literal["uvloop", "asyncio"]
ReportKind = Literal["statuses", "checks"]


# --- the tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8081
    # In the file, the default is http://{host}:{port}.
    public_url: Annotated[str, Key(default_from=local_url), url("http", "https")] = (
        "http://127.0.0.1:8081"
    )
    # Peers whose X-Forwarded-For is believed (nginx on the same host).
    trusted_proxies: Annotated[tuple[str, ...], each(ip_address)] = ("127.0.0.1", "::1")
    # After SIGTERM, keep answering at least this long (a proxy's reload is not instant).
    shutdown_grace: float = 5.0
    # uvloop takes about 6% more webhooks a second (bench S3); asyncio is the fallback.
    event_loop: EventLoopKind = "uvloop"
    # This node's name in logs, pages and the database (default: host name and port).
    node_name: Annotated[str | None, valid_node_name] = None

    @property
    def node(self) -> str:
        return self.node_name or f"{socket.gethostname()}:{self.port}"


@dataclass(frozen=True)
class GitHubSettings:
    webhook_secret: Annotated[str, Key(env="HOBOTNICA_WEBHOOK_SECRET")]
    api_url: Annotated[str, without_credentials, url("http", "https")] = "https://api.github.com"
    git_url: Annotated[str, without_credentials, url("http", "https", "file")] = (
        "https://github.com"
    )
    token: Annotated[str | None, Key(env="HOBOTNICA_GITHUB_TOKEN")] = None
    # A GitHub App instead of (or while moving from) the token: its id and private key.
    app_id: Annotated[int | None, Key(env="HOBOTNICA_GITHUB_APP_ID"), positive] = None
    private_key_file: Annotated[Path | None, app_private_key_file] = None
    # Repositories the App is installed on register themselves (within api.allowed_owners).
    auto_register: bool = False
    # How builds are reported: commit statuses, or check runs (a GitHub App only).
    report: ReportKind = "statuses"
    # The App's key (PEM): read from private_key_file, or HOBOTNICA_GITHUB_APP_PRIVATE_KEY.
    app_private_key: Annotated[str | None, NOT_IN_FILE] = None
    catch_up: bool = True
    catch_up_interval: Annotated[float, positive] = 600.0
    statuses_per_minute: Annotated[float, positive] = 60.0
    access_check_interval: Annotated[float, positive] = 3600.0

    def __repr__(self) -> str:  # keep credentials out of tracebacks and debug output
        return f"GitHubSettings(api_url={self.api_url!r}, git_url={self.git_url!r})"

    @property
    def app(self) -> tuple[int, str] | None:
        """The App's id and private key, when Hobotnica is installed as a GitHub App."""
        if self.app_id is None or self.app_private_key is None:
            return None
        return self.app_id, self.app_private_key

    @property
    def uses_development_secret(self) -> bool:
        return self.webhook_secret == DEVELOPMENT_WEBHOOK_SECRET


@dataclass(frozen=True)
class BuildSettings:
    concurrency: Annotated[int, positive] = 2
    timeout: Annotated[float, positive] = 3600.0
    kill_grace: Annotated[float, positive] = 10.0
    max_log_bytes: Annotated[int, positive] = 64 * 1024 * 1024
    drain_timeout: Annotated[float, positive] = 1800.0
    build_tags: bool = False
    sandbox: SandboxKind = "none"
    cancel_running: bool = True
    keep_days: Annotated[float, positive] = 90.0
    keep_per_repository: Annotated[int, positive] = 1000
    # One build's whole process tree: bytes of memory, and processes and threads (None: no limit).
    memory_max: Annotated[int | None, at_least(MIN_MEMORY_MAX, "(or absent: no limit)")] = None
    tasks_max: Annotated[int | None, at_least(MIN_TASKS_MAX, "(or absent: no limit)")] = None
    # A user name in the file; None: builds run as the daemon's own user.
    user: Annotated[BuildUser | None, Key(file_type=str | None), build_user] = None


@dataclass(frozen=True)
class PullRequestSettings:
    forks: ForkPolicy = "never"


@dataclass(frozen=True)
class DeploySettings:
    """How `hobotnica switch` runs blue/green (see runner.cli.switch)."""

    ports: Annotated[tuple[int, int], Key(file_type=tuple[int, ...]), port_pair] = (8081, 8082)
    manager: Literal["systemd", "process"] = "systemd"
    upstream_file: Path = Path("/etc/nginx/hobotnica-upstream.conf")
    nginx_test: Annotated[tuple[str, ...], command] = ("nginx", "-t")
    nginx_reload: Annotated[tuple[str, ...], command] = ("nginx", "-s", "reload")
    health_timeout: Annotated[float, positive] = 60.0
    run_dir: Path = Path("run")


@dataclass(frozen=True)
class UiSettings:
    """Who may look at the pages (`runner.web.auth`)."""

    # Pages, badges, logs and metrics without signing in; cancel and re-run still need a user.
    public: bool = False
    # User name → password hash (`hobotnica hash-password`).
    users: Annotated[Mapping[str, str], each_entry(user_name, password_hash)] = field(
        default_factory=dict
    )

    def __repr__(self) -> str:  # keep password hashes out of tracebacks and debug output
        return f"UiSettings(public={self.public!r}, users={sorted(self.users)!r})"

    @property
    def has_development_user(self) -> bool:
        return self.users.get(DEVELOPMENT_USER) == DEVELOPMENT_PASSWORD_HASH


@dataclass(frozen=True)
class ApiSettings:
    """Who may register repositories through the REST API (`runner.api`)."""

    # GitHub owners (users or organisations) whose repositories may be registered; empty: none.
    # A registration runs its Makefile on this host, so this is the operator's decision.
    allowed_owners: Annotated[tuple[str, ...], each(github_owner)] = ()

    def allows_owner(self, owner: str) -> bool:
        return owner.lower() in (allowed.lower() for allowed in self.allowed_owners)


@dataclass(frozen=True)
class Project:
    repository: Annotated[str, repository]
    deploy_branch: Annotated[str | None, branch] = None
    env: Annotated[Mapping[str, str], each_entry(variable_name)] = field(default_factory=dict)
    secrets: Annotated[Mapping[str, str], each_entry(variable_name, maskable)] = field(
        default_factory=dict
    )
    # Scheduled builds (`runner.scheduling.schedules`): the schedule_branch's head (default: the
    # repository's default branch) is tested at these times, in schedule_timezone.
    schedule: Annotated[str | None, cron_expression] = None
    schedule_timezone: Annotated[str, time_zone] = "UTC"
    schedule_branch: Annotated[str | None, branch] = None
    # Overrides of `[notifications]` for this repository (`NotificationSettings`).
    notify: NotificationSettings = NotificationSettings()
    # Registered through the API: these may differ per repository.
    deploy_enabled: Annotated[bool, NOT_IN_FILE] = True
    timeout: Annotated[float | None, NOT_IN_FILE] = None  # None: builds.timeout
    token: Annotated[str | None, NOT_IN_FILE] = None  # None: github.token

    def __repr__(self) -> str:
        return f"Project(repository={self.repository!r}, deploy_branch={self.deploy_branch!r})"


@dataclass(frozen=True)
class Settings:
    github: GitHubSettings
    data_dir: Annotated[Path, Key(table="storage", default="var")]
    # Below this much free space under data_dir no new build starts (runner.scheduling.free_space).
    min_free: Annotated[int, Key(table="storage"), at_least(0, "(bytes)")] = 1024**3
    # Several nodes share one PostgreSQL; None: the embedded SQLite under data_dir.
    database_url: Annotated[
        str | None, Key(table="storage", env="HOBOTNICA_DATABASE_URL"), postgresql_url
    ] = None
    server: ServerSettings = ServerSettings()
    builds: BuildSettings = BuildSettings()
    pull_requests: PullRequestSettings = PullRequestSettings()
    deploy: DeploySettings = DeploySettings()
    ui: UiSettings = UiSettings()
    api: ApiSettings = ApiSettings()
    notifications: NotificationSettings = NotificationSettings()
    projects: Annotated[tuple[Project, ...], registered_once] = ()
    inherited_env: Annotated[Mapping[str, str], NOT_IN_FILE] = field(default_factory=dict)
    config_path: Annotated[Path | None, NOT_IN_FILE] = None

    def project(self, repository: str) -> Project | None:
        """The registered project for `owner/name`; GitHub names are case-insensitive."""
        wanted = repository.lower()
        return next((p for p in self.projects if p.repository.lower() == wanted), None)


# --- reading -------------------------------------------------------------------------------------


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read `path` and the relevant environment variables into `Settings`."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not valid UTF-8 (TOML must be): {error.reason}") from error
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    return parse_settings(raw, environ, base_dir=path.resolve().parent, config_path=path)


def parse_settings(
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    base_dir: Path,
    config_path: Path | None = None,
) -> Settings:
    """A parsed TOML document and the environment as `Settings`; ConfigError lists every problem."""
    reading = Reading(base_dir, environ)
    values = read_table(Settings, raw, "", reading)
    reading.problems.extend(_problems_between_tables(reading.valid))
    if isinstance(github := values.get("github"), GitHubSettings):
        values["github"] = _with_app_key(github, environ, reading)
    reading.raise_problems(config_path)
    return Settings(**values, inherited_env=inherited_environment(environ), config_path=config_path)


def _with_app_key(
    github: GitHubSettings, environ: Mapping[str, str], reading: Reading
) -> GitHubSettings:
    """The App's private key read into the settings, and the App's keys checked together."""
    pem = environ.get(APP_KEY_VARIABLE) or None
    try:
        if pem is not None:
            app_private_key(APP_KEY_VARIABLE, pem)
        elif github.private_key_file is not None:
            pem = github.private_key_file.read_text(encoding="utf-8")
        if github.app_id is not None and pem is None:
            raise ConfigError(
                f"github.app_id needs the App's private key: github.private_key_file, or the "
                f"environment variable {APP_KEY_VARIABLE}"
            )
        if pem is not None and github.app_id is None:
            raise ConfigError(
                "a GitHub App's private key is set but github.app_id (or HOBOTNICA_GITHUB_APP_ID) "
                "is not"
            )
        if github.auto_register and github.app_id is None:
            raise ConfigError("github.auto_register needs a GitHub App (github.app_id)")
        if github.report == "checks" and github.app_id is None:
            raise ConfigError(
                'github.report = "checks" needs a GitHub App (github.app_id): GitHub lets only '
                "Apps write check runs"
            )
    except ConfigError as error:
        reading.add(error)
        return github
    except OSError as error:
        reading.add(ConfigError(f"github.private_key_file: cannot read it: {error.strerror}"))
        return github
    return dataclasses.replace(github, app_private_key=pem)


def _problems_between_tables(valid: Mapping[str, Any]) -> Iterator[str]:
    """Rules over keys of several tables, each checked when all its keys are valid."""
    reachable = "server.public_url" in valid and not is_loopback_url(valid["server.public_url"])
    forks = valid.get("pull_requests.forks")
    if forks in ("without-secrets", "approve") and valid.get("builds.sandbox") == "none":
        yield (
            f'pull_requests.forks = "{forks}" needs builds.sandbox = "bubblewrap": '
            "without the sandbox a fork's code runs as the daemon's user and can read the "
            "daemon's environment, the config file and other repositories"
        )
    secret = valid.get("github.webhook_secret")
    if reachable and secret is not None and len(secret) < MIN_WEBHOOK_SECRET_LENGTH:
        yield (
            "github.webhook_secret (or HOBOTNICA_WEBHOOK_SECRET) is shorter than "
            f"{MIN_WEBHOOK_SECRET_LENGTH} characters, which is only accepted while "
            "server.public_url is a loopback address. Make one with "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'`"
        )
    if reachable and UiSettings(users=valid.get("ui.users", {})).has_development_user:
        yield (
            f"ui.users.{DEVELOPMENT_USER} is the example config's development user, whose "
            "password is in the README; it is only accepted while server.public_url is a "
            "loopback address. Remove it and add your own with `hobotnica hash-password`"
        )


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED_ENV_NAMES or name.startswith(INHERITED_ENV_PREFIXES)
    }
