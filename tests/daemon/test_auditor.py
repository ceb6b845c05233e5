"""The auditor alone: a batch in, a Commit out, with no database anywhere."""

from __future__ import annotations

from datetime import timedelta

from captured_pair import probe, volume
from pipeline import CONFIG, T0

from auditd.config import parse_config
from auditd.daemon.auditor import Auditor
from auditd.daemon.items import Tick
from auditd.daemon.led import Led
from auditd.daemon.scopes import Scopes
from auditd.inventory.inventory import Inventory
from auditd.rules.engine import RuleEngine


def auditor() -> Auditor:
    config = parse_config(CONFIG)
    scopes = Scopes.of(config)
    return Auditor(Inventory(), RuleEngine(config), {}, Led(scopes, frozenset(scopes.all)))


def test_a_step_decides_and_only_an_accepted_commit_opens_a_violation() -> None:
    a = auditor()
    healthy = [probe("dr1", "healthy"), probe("dr2", "healthy")]
    first = a.step([*volume("dr1"), *healthy, Tick(T0)], T0)
    assert first.delta.transitions and not first.changes and not first.empty
    assert first.probe_rows and first.lags  # what /metrics and probe health are told
    a.accept(first)
    later = T0 + timedelta(minutes=1)
    stray = a.step([*volume("dr2"), *healthy, Tick(later)], later)
    opened = {(c.violation.rule, c.violation.state) for c in stray.changes}
    assert opened == {("k8s-objects-on-both", "pending")}, opened
    assert not a.active  # not written yet: nothing is open in memory either
    a.accept(stray)
    assert [rule for rule, _ in a.active] == ["k8s-objects-on-both"]
    # Nothing new: a tick alone changes nothing and writes nothing.
    quiet = a.step([Tick(later + timedelta(seconds=5))], later + timedelta(seconds=5))
    assert quiet.empty and not quiet.changes


def test_a_standby_follows_without_judging() -> None:
    a = auditor()
    a.led = Led(a.led.scopes, frozenset())
    a.follow([*volume("dr2"), probe("dr1", "healthy"), probe("dr2", "healthy")])
    assert a.inventory.objects and not a.active


def test_a_batch_taken_again_after_a_failed_write_makes_the_same_rows() -> None:
    """The write of a step can fail (the database went away); the writer takes the same batch
    in again, and its samples and probe health must be those of the first try, not lost as
    "already sampled" nor counted twice."""
    a = auditor()
    batch = [*volume("dr1"), probe("dr1", "healthy"), probe("dr2", "healthy"), Tick(T0)]
    tried = a.step(batch, T0)
    assert tried.samples  # the first sample of each image
    again = a.step(batch, T0)  # the first was never accepted
    assert again.samples == tried.samples
    assert again.probe_rows == tried.probe_rows
    a.accept(again)
    later = T0 + timedelta(seconds=30)
    # Sampled once an interval (an hour by default): the next probe makes no sample.
    assert not a.step([probe("dr1", "healthy"), Tick(later)], later).samples
