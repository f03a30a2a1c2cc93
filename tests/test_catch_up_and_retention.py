"""Catching up on deliveries GitHub could not make while the daemon was down, and retention."""

import datetime
import json

from runner.app import RETENTION
from runner.core.links import log_path
from runner.intake.catchup import missed_deliveries
from tests.conftest import SECRET, DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub, HookDelivery
from tests.support.gitrepo import Remote
from tests.support.webhooks import headers, push_payload
from tests.test_core_loop import PASSING


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


async def test_a_push_missed_while_down_is_redelivered_at_the_next_start(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    seen = remote.commit({"Makefile": PASSING}, branch="seen")
    missed = remote.commit({"Makefile": PASSING}, branch="missed")
    d = await daemon(make_settings())
    seen_payload = push_payload("octo/app", seen, branch="seen")
    await d.deliver("push", seen_payload, "guid-seen")  # teaches the daemon the hook id
    await fake_github.wait_final(seen)
    await d.stop()

    # While it was down, GitHub failed to deliver a push. It also counts the first delivery as
    # failed (say it timed out on GitHub's side), although the daemon stored it.
    missed_body = json.dumps(push_payload("octo/app", missed, branch="missed")).encode()
    seen_body = json.dumps(seen_payload).encode()
    fake_github.deliveries = [
        HookDelivery(2, "guid-missed", "push", 0, now_iso(), missed_body),
        HookDelivery(1, "guid-seen", "push", 504, now_iso(), seen_body),
    ]

    async def redeliver(delivery: HookDelivery) -> int:
        hdrs = headers(delivery.body, SECRET, delivery.event, delivery.guid)
        status, _ = await d.post_raw(delivery.body, hdrs)
        return status

    fake_github.redeliver = redeliver
    await d.start()

    assert (await fake_github.wait_final(missed)).state == "success"
    assert fake_github.redelivery_requests == [2]  # the stored delivery is not asked for again
    assert [s.state for s in fake_github.for_commit(seen)].count("success") == 1


def test_only_deliveries_never_made_and_never_seen_are_missed() -> None:
    listed = [
        {"id": 5, "guid": "a", "status_code": 202},  # a redelivery that worked
        {"id": 4, "guid": "b", "status_code": 0},
        {"id": 3, "guid": "a", "status_code": 0},
        {"id": 2, "guid": "c", "status_code": 502},
        {"id": 1, "guid": "b", "status_code": 0},
    ]
    assert missed_deliveries(listed, known={"c"}) == {"b": 4}


async def test_old_builds_are_pruned_with_their_logs(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    d = await daemon(make_settings(builds={"keep_per_repository": 2}))
    for n in range(4):
        sha = remote.commit({"Makefile": PASSING, "n": str(n)}, branch=f"branch-{n}")
        await d.deliver("push", push_payload("octo/app", sha, branch=f"branch-{n}"))
        await fake_github.wait_final(sha)
    assert d.client is not None

    pruned = await d.client.app[RETENTION].run_once()

    assert pruned == [1, 2]
    for build_id, kept in ((1, False), (2, False), (3, True), (4, True)):
        response = await d.client.get(f"/api/builds/{build_id}")
        assert response.status == (200 if kept else 404)
        assert log_path(d.settings.data_dir, build_id).exists() is kept
