"""Typed, frozen settings read once from a TOML file and the environment.

Loading fails closed: an unknown key, a missing webhook secret or a malformed repository name raises
`ConfigError` with a message that names the key. Nothing else in the package reads `os.environ`:
the part of the daemon's environment that builds inherit is captured here.
"""

import ipaddress
import pwd
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from runner.core.errors import ConfigError
from runner.core.names import is_branch_name, is_env_name, is_repository_name, is_user_name
from runner.core.passwords import is_password_hash

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

# Builds inherit only these variables of the daemon's own environment (DESIGN.md).
INHERITED_ENV_NAMES = ("PATH", "HOME", "LANG", "TZ", "TMPDIR")
INHERITED_ENV_PREFIXES = ("LC_",)

# Shorter secrets would mask innocent text all over a log (think "1" or "yes").
MIN_SECRET_LENGTH = 6
# Lower limits would not let `make` itself start.
MIN_MEMORY_MAX = 16 * 1024 * 1024
MIN_TASKS_MAX = 4

ForkPolicy = Literal["never", "without-secrets"]
SandboxKind = Literal["none", "bubblewrap"]
EventLoopKind = Literal["uvloop", "asyncio"]


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8081
    public_url: str = "http://127.0.0.1:8081"
    # Peers whose X-Forwarded-For is believed (nginx on the same host).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # After SIGTERM, keep answering at least this long (a proxy's reload is not instant).
    shutdown_grace: float = 5.0
    # uvloop takes about 6% more webhooks a second (bench S3); asyncio is the fallback.
    event_loop: EventLoopKind = "uvloop"


@dataclass(frozen=True)
class GitHubSettings:
    webhook_secret: str
    api_url: str = "https://api.github.com"
    git_url: str = "https://github.com"
    token: str | None = None
    catch_up: bool = True
    catch_up_interval: float = 600.0
    statuses_per_minute: float = 60.0
    access_check_interval: float = 3600.0

    def __repr__(self) -> str:  # keep credentials out of tracebacks and debug output
        return f"GitHubSettings(api_url={self.api_url!r}, git_url={self.git_url!r})"

    @property
    def uses_development_secret(self) -> bool:
        return self.webhook_secret == DEVELOPMENT_WEBHOOK_SECRET


@dataclass(frozen=True)
class BuildUser:
    """The account builds run as (`builds.user`), looked up once at start."""

    name: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True)
class BuildSettings:
    concurrency: int = 2
    timeout: float = 3600.0
    kill_grace: float = 10.0
    max_log_bytes: int = 64 * 1024 * 1024
    drain_timeout: float = 1800.0
    build_tags: bool = False
    sandbox: SandboxKind = "none"
    cancel_running: bool = True
    keep_days: float = 90.0
    keep_per_repository: int = 1000
    # One build's whole process tree: bytes of memory, and processes and threads (None: no limit).
    memory_max: int | None = None
    tasks_max: int | None = None
    user: BuildUser | None = None  # None: builds run as the daemon's own user


@dataclass(frozen=True)
class PullRequestSettings:
    forks: ForkPolicy = "never"


@dataclass(frozen=True)
class DeploySettings:
    """How `hobotnica switch` runs blue/green (see runner.cli.switch)."""

    ports: tuple[int, int] = (8081, 8082)
    manager: Literal["systemd", "process"] = "systemd"
    upstream_file: Path = Path("/etc/nginx/hobotnica-upstream.conf")
    nginx_test: tuple[str, ...] = ("nginx", "-t")
    nginx_reload: tuple[str, ...] = ("nginx", "-s", "reload")
    health_timeout: float = 60.0
    run_dir: Path = Path("run")


@dataclass(frozen=True)
class UiSettings:
    """Who may look at the pages (`runner.web.auth`)."""

    # Pages, badges, logs and metrics without signing in; cancel and re-run still need a user.
    public: bool = False
    # User name → password hash (`hobotnica hash-password`).
    users: Mapping[str, str] = field(default_factory=dict)

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
    allowed_owners: tuple[str, ...] = ()

    def allows_owner(self, owner: str) -> bool:
        return owner.lower() in (allowed.lower() for allowed in self.allowed_owners)


@dataclass(frozen=True)
class Project:
    repository: str
    deploy_branch: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    # Registered through the API: these may differ per repository.
    deploy_enabled: bool = True
    timeout: float | None = None  # None: builds.timeout
    token: str | None = None  # None: github.token

    def __repr__(self) -> str:
        return f"Project(repository={self.repository!r}, deploy_branch={self.deploy_branch!r})"


@dataclass(frozen=True)
class Settings:
    github: GitHubSettings
    data_dir: Path
    # Below this much free space under data_dir no new build starts (runner.scheduling.free_space).
    min_free: int = 1024**3
    server: ServerSettings = ServerSettings()
    builds: BuildSettings = BuildSettings()
    pull_requests: PullRequestSettings = PullRequestSettings()
    deploy: DeploySettings = DeploySettings()
    ui: UiSettings = UiSettings()
    api: ApiSettings = ApiSettings()
    projects: tuple[Project, ...] = ()
    inherited_env: Mapping[str, str] = field(default_factory=dict)
    config_path: Path | None = None

    def project(self, repository: str) -> Project | None:
        """The registered project for `owner/name`; GitHub names are case-insensitive."""
        wanted = repository.lower()
        return next((p for p in self.projects if p.repository.lower() == wanted), None)


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
    _reject_unknown(
        raw,
        "",
        {
            "server",
            "github",
            "storage",
            "builds",
            "pull_requests",
            "deploy",
            "ui",
            "api",
            "projects",
        },
    )
    server = _table(raw, "server")
    github = _table(raw, "github")
    storage = _table(raw, "storage")
    builds = _table(raw, "builds")
    pulls = _table(raw, "pull_requests")
    _reject_unknown(
        server,
        "server.",
        {"host", "port", "public_url", "trusted_proxies", "shutdown_grace", "event_loop"},
    )
    _reject_unknown(
        github,
        "github.",
        {
            "api_url",
            "git_url",
            "webhook_secret",
            "token",
            "catch_up",
            "catch_up_interval",
            "statuses_per_minute",
            "access_check_interval",
        },
    )
    _reject_unknown(storage, "storage.", {"data_dir", "min_free"})
    _reject_unknown(
        builds,
        "builds.",
        {
            "concurrency",
            "timeout",
            "kill_grace",
            "max_log_bytes",
            "drain_timeout",
            "build_tags",
            "sandbox",
            "cancel_running",
            "keep_days",
            "keep_per_repository",
            "memory_max",
            "tasks_max",
            "user",
        },
    )
    _reject_unknown(pulls, "pull_requests.", {"forks"})

    port = _get(server, "server.port", int, 8081)
    host = _get(server, "server.host", str, "127.0.0.1")
    public_url = _get(server, "server.public_url", str, f"http://{host}:{port}").rstrip("/")
    _require_http_url(public_url, "server.public_url")

    secret = environ.get("HOBOTNICA_WEBHOOK_SECRET") or _get(
        github, "github.webhook_secret", str, ""
    )
    if not secret:
        raise ConfigError(
            "github.webhook_secret is missing: set it in the config file or in the environment "
            "variable HOBOTNICA_WEBHOOK_SECRET"
        )
    token = environ.get("HOBOTNICA_GITHUB_TOKEN") or _get(github, "github.token", str, "") or None
    api_url = _get(github, "github.api_url", str, "https://api.github.com").rstrip("/")
    git_url = _get(github, "github.git_url", str, "https://github.com").rstrip("/")
    # Checked first, so that no later message repeats a credential found in a URL.
    for name, url in (("github.api_url", api_url), ("github.git_url", git_url)):
        if "@" in urlsplit(url).netloc:
            raise ConfigError(f"{name} must not carry credentials; use github.token")
    _require_http_url(api_url, "github.api_url")
    if urlsplit(git_url).scheme not in ("http", "https", "file"):
        raise ConfigError(f"github.git_url must be an http(s):// or file:// URL, not {git_url!r}")

    data_dir = Path(_get(storage, "storage.data_dir", str, "var"))
    if not data_dir.is_absolute():
        data_dir = (base_dir / data_dir).resolve()

    build_settings = BuildSettings(
        concurrency=_positive(_get(builds, "builds.concurrency", int, 2), "builds.concurrency"),
        timeout=_positive(_get(builds, "builds.timeout", (int, float), 3600), "builds.timeout"),
        kill_grace=_positive(
            _get(builds, "builds.kill_grace", (int, float), 10), "builds.kill_grace"
        ),
        max_log_bytes=_positive(
            _get(builds, "builds.max_log_bytes", int, 64 * 1024 * 1024), "builds.max_log_bytes"
        ),
        drain_timeout=_positive(
            _get(builds, "builds.drain_timeout", (int, float), 1800), "builds.drain_timeout"
        ),
        build_tags=_get(builds, "builds.build_tags", bool, False),
        sandbox=_choice(builds, "builds.sandbox", ("none", "bubblewrap"), "none"),
        cancel_running=_get(builds, "builds.cancel_running", bool, True),
        keep_days=_positive(_get(builds, "builds.keep_days", (int, float), 90), "builds.keep_days"),
        keep_per_repository=_positive(
            _get(builds, "builds.keep_per_repository", int, 1000), "builds.keep_per_repository"
        ),
        memory_max=_optional_limit(builds, "builds.memory_max", MIN_MEMORY_MAX),
        tasks_max=_optional_limit(builds, "builds.tasks_max", MIN_TASKS_MAX),
        user=_build_user(_get(builds, "builds.user", str, "")),
    )
    min_free = _get(storage, "storage.min_free", int, 1024**3)
    if min_free < 0:
        raise ConfigError("storage.min_free must be 0 or more (bytes)")
    forks = _choice(pulls, "pull_requests.forks", ("never", "without-secrets"), "never")

    if forks == "without-secrets" and build_settings.sandbox != "bubblewrap":
        raise ConfigError(
            'pull_requests.forks = "without-secrets" needs builds.sandbox = "bubblewrap": '
            "without the sandbox a fork's code runs as the daemon's user and can read the "
            "daemon's environment, the config file and other repositories"
        )

    deploy = _parse_deploy(_table(raw, "deploy"), base_dir)
    ui = _parse_ui(_table(raw, "ui"), public_url)
    api = _parse_api(_table(raw, "api"))

    projects_raw = raw.get("projects", [])
    if not isinstance(projects_raw, list):
        raise ConfigError("projects must be an array of tables ([[projects]])")
    projects = tuple(_parse_project(p, i) for i, p in enumerate(projects_raw))
    seen: set[str] = set()
    for project in projects:
        if project.repository.lower() in seen:
            raise ConfigError(f"projects: {project.repository} is registered twice")
        seen.add(project.repository.lower())

    return Settings(
        server=ServerSettings(
            host=host,
            port=port,
            public_url=public_url,
            trusted_proxies=tuple(_addresses(server, "server.trusted_proxies")),
            shutdown_grace=_get(server, "server.shutdown_grace", (int, float), 5),
            event_loop=_choice(server, "server.event_loop", ("uvloop", "asyncio"), "uvloop"),
        ),
        github=GitHubSettings(
            webhook_secret=secret,
            token=token,
            api_url=api_url,
            git_url=git_url,
            catch_up=_get(github, "github.catch_up", bool, True),
            catch_up_interval=_positive(
                _get(github, "github.catch_up_interval", (int, float), 600),
                "github.catch_up_interval",
            ),
            statuses_per_minute=_positive(
                _get(github, "github.statuses_per_minute", (int, float), 60),
                "github.statuses_per_minute",
            ),
            access_check_interval=_positive(
                _get(github, "github.access_check_interval", (int, float), 3600),
                "github.access_check_interval",
            ),
        ),
        data_dir=data_dir,
        min_free=min_free,
        builds=build_settings,
        pull_requests=PullRequestSettings(forks=forks),
        deploy=deploy,
        ui=ui,
        api=api,
        projects=projects,
        inherited_env=inherited_environment(environ),
        config_path=config_path,
    )


def _parse_api(table: Mapping[str, Any]) -> ApiSettings:
    _reject_unknown(table, "api.", {"allowed_owners"})
    owners = _get(table, "api.allowed_owners", list, [])
    for owner in owners:
        if not isinstance(owner, str) or not is_repository_name(f"{owner}/x"):
            raise ConfigError(f"api.allowed_owners: {owner!r} is not a GitHub user or organisation")
        if owner.lower() == "local":
            raise ConfigError("api.allowed_owners: 'local' is reserved for hobotnica try")
    return ApiSettings(allowed_owners=tuple(owners))


def _addresses(table: Mapping[str, Any], name: str) -> list[str]:
    values = _get(table, name, list, ["127.0.0.1", "::1"])
    for value in values:
        try:
            ipaddress.ip_address(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: {value!r} is not an IP address") from None
    return [str(value) for value in values]


def _parse_deploy(table: Mapping[str, Any], base_dir: Path) -> DeploySettings:
    _reject_unknown(
        table,
        "deploy.",
        {
            "ports",
            "manager",
            "upstream_file",
            "nginx_test",
            "nginx_reload",
            "health_timeout",
            "run_dir",
        },
    )
    ports = _get(table, "deploy.ports", list, [8081, 8082])
    valid = len(ports) == 2 and all(isinstance(p, int) and 0 < p < 65536 for p in ports)
    if not valid or ports[0] == ports[1]:
        raise ConfigError("deploy.ports must be two different port numbers, like [8081, 8082]")
    commands = {}
    for key, default in (
        ("nginx_test", ["nginx", "-t"]),
        ("nginx_reload", ["nginx", "-s", "reload"]),
    ):
        command = _get(table, f"deploy.{key}", list, default)
        if not command or not all(isinstance(part, str) for part in command):
            raise ConfigError(f"deploy.{key} must be a command as a list of strings")
        commands[key] = tuple(command)
    upstream = Path(_get(table, "deploy.upstream_file", str, "/etc/nginx/hobotnica-upstream.conf"))
    run_dir = Path(_get(table, "deploy.run_dir", str, "run"))
    return DeploySettings(
        ports=(ports[0], ports[1]),
        manager=_choice(table, "deploy.manager", ("systemd", "process"), "systemd"),
        upstream_file=upstream if upstream.is_absolute() else base_dir / upstream,
        nginx_test=commands["nginx_test"],
        nginx_reload=commands["nginx_reload"],
        health_timeout=_positive(
            _get(table, "deploy.health_timeout", (int, float), 60), "deploy.health_timeout"
        ),
        run_dir=run_dir if run_dir.is_absolute() else base_dir / run_dir,
    )


def _parse_ui(table: Mapping[str, Any], public_url: str) -> UiSettings:
    _reject_unknown(table, "ui.", {"public", "users"})
    users = table.get("users", {})
    if not isinstance(users, dict):
        raise ConfigError("ui.users must be a table of user names and password hashes")
    for name, value in users.items():
        if not is_user_name(name):
            raise ConfigError(
                f"ui.users: {name!r} is not a valid user name (letters, digits, . _ @ -; "
                "at most 64)"
            )
        # The value is never echoed: a password pasted where its hash belongs stays unprinted.
        if not isinstance(value, str) or not is_password_hash(value):
            raise ConfigError(
                f"ui.users.{name} is not a password hash: make one with `hobotnica hash-password`"
            )
    ui = UiSettings(public=_get(table, "ui.public", bool, False), users=dict(users))
    if ui.has_development_user and not _is_loopback_url(public_url):
        raise ConfigError(
            f"ui.users.{DEVELOPMENT_USER} is the example config's development user, whose "
            "password is in the README; it is only accepted while server.public_url is a "
            "loopback address. Remove it and add your own with `hobotnica hash-password`"
        )
    return ui


def _is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name in INHERITED_ENV_NAMES or name.startswith(INHERITED_ENV_PREFIXES)
    }


def _parse_project(raw: object, index: int) -> Project:
    where = f"projects[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    _reject_unknown(raw, f"{where}.", {"repository", "deploy_branch", "env", "secrets"})
    repository = _get(raw, f"{where}.repository", str, "")
    if not is_repository_name(repository):
        raise ConfigError(
            f"{where}.repository {repository!r} is not a valid repository name (owner/name)"
        )
    deploy_branch = _get(raw, f"{where}.deploy_branch", str, "") or None
    if deploy_branch is not None and not is_branch_name(deploy_branch):
        raise ConfigError(f"{where}.deploy_branch {deploy_branch!r} is not a valid branch name")
    env = _string_table(raw, "env", where)
    secrets = _string_table(raw, "secrets", where)
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{where}.secrets.{name} is shorter than {MIN_SECRET_LENGTH} characters: "
                "too short to mask in logs safely"
            )
    return Project(repository=repository, deploy_branch=deploy_branch, env=env, secrets=secrets)


def _string_table(raw: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    table = raw.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}.{key} must be a table of strings")
    for name, value in table.items():
        if not is_env_name(name):
            raise ConfigError(f"{where}.{key}.{name} is not a valid environment variable name")
        if not isinstance(value, str):
            raise ConfigError(f"{where}.{key}.{name} must be a string")
        if name.startswith("HOBOTNICA") or name == "CI":
            raise ConfigError(f"{where}.{key}.{name}: that name is reserved for Hobotnica")
    return dict(table)


def _table(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a table ([{key}])")
    return value


def _reject_unknown(table: Mapping[str, Any], prefix: str, known: set[str]) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}{key!s}")


def _get(table: Mapping[str, Any], name: str, kind: Any, default: Any) -> Any:
    value = table.get(name.rsplit(".", 1)[-1], default)
    # bool is an int in Python; a boolean where a number is wanted is a mistake in the file.
    if isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{name} must be {_kind_name(kind)}, not a boolean")
    if not isinstance(value, kind):
        raise ConfigError(f"{name} must be {_kind_name(kind)}, not {type(value).__name__}")
    return value


def _choice(table: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> Any:
    value = _get(table, name, str, default)
    if value not in choices:
        allowed = " or ".join(repr(choice) for choice in choices)
        raise ConfigError(f"{name} must be {allowed}, not {value!r}")
    return value


def _kind_name(kind: Any) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", list: "a list"}
    if isinstance(kind, tuple):
        return "a number"
    return names.get(kind, "a value")


_Number = TypeVar("_Number", int, float)


def _optional_limit(table: Mapping[str, Any], name: str, minimum: int) -> int | None:
    value: int | None = _get(table, name, (int, type(None)), None)
    if value is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} (or absent: no limit)")
    return value


def _build_user(name: str) -> BuildUser | None:
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"builds.user: there is no user {name!r} on this host") from None
    if entry.pw_uid == 0:
        raise ConfigError("builds.user must not be root: builds would own the host")
    return BuildUser(name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _positive(value: _Number, name: str) -> _Number:
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0")
    return value


def _require_http_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, not {url!r}")
