"""What a SIGHUP reload compares and keeps: which settings changed, and which of them apply live.

The daemons re-read their file on SIGHUP (:mod:`burrow.daemon.service`). A setting in the role's
live set is put in force at once; any other change is logged as needing a restart and keeps its
running value, so the next reload reports it again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from burrow.config import BurrowConfig

#: Settings a SIGHUP applies live; every other changed key is logged as needing a restart.
LIVE_SETTINGS = {
    "logging.level",
    "consumer.concurrency",
    "producer.request_timeout",
    "producer.unavailable_wait",
    "producer.shutdown_timeout",
    "consumer.shutdown_timeout",
}
#: The producer also moves to other broker nodes live (``Producer.use_brokers``), which may switch
#: its reply queue type; the consumer needs a restart for that.
PRODUCER_LIVE_SETTINGS = LIVE_SETTINGS | {"rabbitmq.host", "rabbitmq.hosts"}


def changed_settings(old: BurrowConfig, new: BurrowConfig) -> list[str]:
    """Dotted names of the settings that differ (values are not returned: one may be a password)."""
    changed: list[str] = []
    for section in dataclasses.fields(old):
        if section.name == "path":
            continue
        before, after = getattr(old, section.name), getattr(new, section.name)
        for item in dataclasses.fields(before):
            if getattr(before, item.name) != getattr(after, item.name):
                changed.append(f"{section.name}.{item.name}")
    return changed


def with_live_settings(running: BurrowConfig, new: BurrowConfig, live: set[str] = LIVE_SETTINGS) -> BurrowConfig:
    """``running`` with the ``live`` settings of ``new``: what a reload actually put in force.

    Keys that need a restart keep their running value, so the next reload warns about them again.
    """
    sections: dict[str, Any] = {}
    for dotted in sorted(live):
        section, key = dotted.split(".")
        current = sections.get(section, getattr(running, section))
        sections[section] = dataclasses.replace(current, **{key: getattr(getattr(new, section), key)})
    return dataclasses.replace(running, **sections)
