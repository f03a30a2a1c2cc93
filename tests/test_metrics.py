"""`GET /metrics` after real builds: the counters and the push-to-start histogram move."""

import json
from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import DaemonFactory, SettingsFactory
from tests.support.fake_github import FakeGitHub
from tests.support.gitrepo import Remote, makefile
from tests.support.webhooks import headers, push_payload
from tests.test_core_loop import PASSING


def samples(text: str, node: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by name and labels; each must say which node exported it."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            assert labels.pop("node", None) == node, sample
            found[(sample.name, tuple(sorted(labels.items())))] = sample.value
    return found


async def test_metrics_count_deliveries_builds_and_push_to_start(
    daemon: DaemonFactory, make_settings: SettingsFactory, fake_github: FakeGitHub, remote: Remote
) -> None:
    green = remote.commit({"Makefile": PASSING}, branch="green")
    red = remote.commit({"Makefile": makefile(test="@exit 1")}, branch="red")
    settings = make_settings()
    settings = replace(settings, server=replace(settings.server, node_name="build-7"))
    d = await daemon(settings)
    assert d.client is not None

    await d.deliver("push", push_payload("octo/app", green, branch="green"), "delivery-1")
    await d.deliver("push", push_payload("octo/app", red, branch="red"))
    await d.deliver("push", push_payload("octo/app", green, branch="green"), "delivery-1")
    body = json.dumps(push_payload("octo/app", green)).encode()
    await d.post_raw(body, headers(body, "not the secret"))
    await fake_github.wait_final(green)
    await fake_github.wait_final(red)
    response = await d.client.get("/metrics")

    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    found = samples(await response.text(), node="build-7")
    delivery = "hobotnica_deliveries_total"
    assert found[(delivery, (("event", "push"), ("outcome", "accepted")))] == 2
    assert found[(delivery, (("event", "push"), ("outcome", "duplicate")))] == 1
    assert found[(delivery, (("event", "other"), ("outcome", "rejected")))] == 1
    finished = "hobotnica_builds_finished_total"
    assert found[(finished, (("job", "test"), ("state", "success")))] == 1
    assert found[(finished, (("job", "test"), ("state", "failure")))] == 1
    assert found[("hobotnica_push_to_start_seconds_count", (("job", "test"),))] == 2
    assert found[("hobotnica_push_to_start_seconds_sum", (("job", "test"),))] > 0
    assert found[("hobotnica_builds", (("state", "queued"),))] == 0
    assert found[("hobotnica_status_posts_total", (("outcome", "sent"),))] >= 2
    assert "octo" not in await response.text()  # no repository names in labels
