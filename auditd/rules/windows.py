"""DR windows: a failover or relocate in progress, per volume, and the episodes they leave.

A window opens when a volume leaves its steady state (exactly one primary) in an orderly way:
a DRPC action, the primary's VolumeReplication asking for `secondary`, a demote. It closes
on settled storage records (inventory/records.py: a record written before the last role
change is stale) when the new primary serves (image primary, PVC Bound) and the old side is
cleaned up; the episode records from where to where, its steps with their times, and the RTO
from the first sign to serving. Inside a window the expected
transients (up+unknown on both sides, the PVC on the new primary before the old one is cleaned
up) are not violations; a window open past its deadline is one (dr-window-overrun).

A failover while the old primary cannot be seen (its probe failing: a lost site) is an episode
too, trigger "forced, peer lost": opened when the survivor's own record claims primary, its
RTO taken when the survivor serves. It stays open, no longer a window, until the old side is
seen fenced: demoted by a record written after the failover, its PVC/PV gone and its VR
secondary. If the old side comes back still primary, that is split brain (the rule says so)
inside the same episode, not a new one.

Pure: views and times in, episode changes out. The store persists them (open ones too), so a
restart resumes an open window instead of forgetting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from auditd.inventory.inventory import Inventory, ObjectKey
from auditd.inventory.rbd_facts import RBD_POOL
from auditd.rules.views import DRPC_MOVING, VR, Side, VolumeId, VolumeView


@dataclass
class Episode:
    volume: VolumeId
    started_at: datetime
    from_cluster: str | None
    trigger: str
    steps: list[tuple[datetime, str]] = field(default_factory=list)
    to_cluster: str | None = None
    promoted_at: datetime | None = None  # the new side serves (storage primary, PVC bound): RTO
    ended_at: datetime | None = None  # the old side was cleaned up too: the window's end
    # What the old side had when the window opened: what "serving" and "clean" mean for it.
    had_pvc: bool = False
    had_vr: bool = False

    @property
    def peer_lost(self) -> bool:
        """A failover with the old primary unreachable: its cleanup is owed until seen."""
        return self.trigger.startswith(PEER_LOST)

    @property
    def switching(self) -> bool:
        """A window: the switch itself is in progress (expected transients). A failover with
        the peer lost stops being one when the survivor serves."""
        return not (self.peer_lost and self.promoted_at is not None)

    @property
    def rto_seconds(self) -> float | None:
        return (self.promoted_at - self.started_at).total_seconds() if self.promoted_at else None

    def step(self, at: datetime, what: str) -> None:
        if not self.steps or self.steps[-1][1] != what:
            self.steps.append((at, what))


PEER_LOST = "forced, peer lost"


def _state(view: VolumeView) -> str:
    return " / ".join(
        f"{s.cluster} {(s.image or {}).get('state', 'not listed')}" for s in view.sides
    )


class WindowTracker:
    """One switch, one episode: opened on the first sign of it (a DRPC action, the primary's VR
    asking for secondary, a demote), closed on settled storage records only (a stale record
    of the just-demoted side never closes it), when the new primary serves and the old side is
    clean, or when the old side is primary again by its own fresh record (an aborted switch)."""

    def __init__(self) -> None:
        self.open: dict[VolumeId, Episode] = {}
        self._steady_primary: dict[VolumeId, str] = {}
        self.changed: list[Episode] = []  # opened, stepped or closed since the last drain

    def resume(self, episode: Episode) -> None:
        self.open[episode.volume] = episode
        if episode.from_cluster:
            self._steady_primary[episode.volume] = episode.from_cluster

    def seed(self, vid: VolumeId, primary: str) -> None:
        """The primary a previous run last saw settled: the "from" of a switch that begins
        before this run has seen a settled view of its own."""
        self._steady_primary.setdefault(vid, primary)

    def forget(self, vid: VolumeId) -> None:
        """A volume gone from both clusters and both sites: its last steady primary goes with
        it (an open window stays, to be closed or overrun as any other)."""
        if vid not in self.open:
            self._steady_primary.pop(vid, None)

    def steady_primary(self, vid: VolumeId) -> str | None:
        """The primary this volume was last seen settled on (the "from" of its next switch)."""
        return self._steady_primary.get(vid)

    def drain(self) -> list[Episode]:
        out, self.changed = self.changed, []
        return out

    def observe(self, view: VolumeView, inventory: Inventory, now: datetime) -> Episode | None:
        """Update the volume's window from its current view; return the open window, if any."""
        vid = view.id
        steady = self._steady_primary.get(vid)
        episode = self.open.get(vid)
        # Without Ramen (no DRPC joins it): no set built for nothing, once per view judged.
        moving = sorted(set(view.drpc_phases) & DRPC_MOVING) if view.drpc_phases else []
        split = view.settled and view.both_primary
        if episode is None:
            if split:
                return None  # not a switch: split-brain says what it is
            trigger = self._trigger(view, inventory, steady, moving)
            if trigger is None:
                if view.primary_cluster is not None:
                    self._steady_primary[vid] = view.primary_cluster
                return None
            old = view.side(steady) if steady is not None else None
            started = now
            if trigger == PEER_LOST and steady is not None:
                # The first sign is the survivor's record claiming primary, which a probe of a
                # hung peer (up to interval + timeout) may have seen well before this moment.
                record = view.peer(steady).record
                if record is not None and record.role_changed_at is not None:
                    started = min(now, record.role_changed_at)
            episode = Episode(
                vid,
                started,
                steady,
                trigger,
                had_pvc=bool(old and old.pvc),
                had_vr=bool(old and old.vr),
            )
            self.open[vid] = episode
            self.changed.append(episode)
        before = len(episode.steps)
        episode.step(now, _state(view))
        closed = (
            self._advance_peer_lost(episode, view, inventory, now)
            if episode.peer_lost
            else self._advance(episode, view, inventory, now, moving, split)
        )
        if closed:
            del self.open[vid]
            if episode.to_cluster is not None:
                self._steady_primary[vid] = episode.to_cluster
        if (closed or len(episode.steps) != before) and episode not in self.changed:
            self.changed.append(episode)
        return None if closed else episode

    # The facts of the inventory ``observe`` reads while no window is open (``_trigger``); all
    # else it reads is in the view. Looking again at the same view, with the tracker as it left
    # it, after changes to other facts only decides the same (RuleEngine skips that look).
    QUIET_READS: frozenset[tuple[str, str]] = frozenset({(VR, "replicationState")})

    def _trigger(
        self, view: VolumeView, inventory: Inventory, steady: str | None, moving: list[str]
    ) -> str | None:
        if moving:
            return f"drpc {moving[0]}"
        if steady is not None and self._vr_wants_secondary(view, inventory, steady):
            return "replicationState secondary"
        if view.in_transition:
            return "demote"
        if steady is None:
            return None
        old, new = view.side(steady), view.peer(steady)
        if not old.storage_known and _claims_primary(new):
            # Promoted while the old primary could not be seen: a failover after losing it.
            # A survivor already primary while the old side was still seen is a split brain
            # that went dark, not a failover (split-brain has said so).
            return PEER_LOST if _promoted_unseen(old, new) else None
        if old.primary is False:
            return "demote"
        if new.primary is True and view.settled:
            return "promote"  # the whole switch happened between two looks
        return None

    def _advance(
        self,
        episode: Episode,
        view: VolumeView,
        inventory: Inventory,
        now: datetime,
        moving: list[str],
        split: bool,
    ) -> bool:
        """Move an open episode on; True when it is over."""
        if split:
            episode.step(now, "both sides primary: split brain, not a switch")
            episode.ended_at = now
            return True
        primary = view.primary_cluster  # settled records only
        if primary is None or moving:
            return False
        if primary != episode.from_cluster:
            if episode.to_cluster != primary:
                episode.to_cluster = primary
                episode.step(now, f"{primary} primary")
            if episode.promoted_at is None and self._serving(view, inventory, episode, primary):
                episode.promoted_at = now
                episode.step(now, f"{primary} serving")
            if episode.promoted_at is not None and self._clean(view, inventory, episode):
                episode.step(now, "old side cleaned up")
                episode.ended_at = now
                return True
            return False
        # The old side is primary again. Only its own record written after the window opened
        # says so (not its last word before a demote), and only its VR asking for primary again
        # (not one deleted as part of the move) makes this an aborted switch.
        record = view.side(primary).record
        fresh = bool(record and record.updated_at and record.updated_at > episode.started_at)
        vr = view.side(primary).vr
        known = inventory.objects.get(vr) if vr else None
        vr_primary = bool(known and known.facts.get("replicationState") == "primary")
        if fresh and (vr_primary or not episode.had_vr):
            episode.to_cluster = primary
            episode.step(now, f"{primary} primary again: switch aborted")
            episode.ended_at = now
            return True
        return False

    def _advance_peer_lost(
        self, episode: Episode, view: VolumeView, inventory: Inventory, now: datetime
    ) -> bool:
        """A failover with the old primary lost: serving on the survivor's own record (the old
        side's cannot settle anything); over only when the old side is seen fenced."""
        if episode.from_cluster is None:
            return True
        old, new = view.side(episode.from_cluster), view.peer(episode.from_cluster)
        if episode.to_cluster is None:
            episode.to_cluster = new.cluster
            pool = inventory.objects.get(ObjectKey(old.cluster, RBD_POOL, "", view.id.pool))
            since = pool.facts.get("probe_failing_since") if pool else None
            blind = f" (its Ceph unreachable since {since})" if since else ""
            episode.step(now, f"{new.cluster} primary while {old.cluster} unreachable{blind}")
        if (
            episode.promoted_at is None
            and _claims_primary(new)
            and self._serving(view, inventory, episode, new.cluster)
        ):
            episode.promoted_at = now
            episode.step(now, f"{new.cluster} serving")
        if not old.storage_known or old.blind:
            return False
        fresh = bool(
            old.record and old.record.updated_at and old.record.updated_at > episode.started_at
        )
        if old.primary is True and fresh:
            back = f"{old.cluster} back, still primary: split brain until fenced"
            if all(what != back for _, what in episode.steps):
                episode.step(now, back)
            return False
        if (
            episode.promoted_at is not None
            and old.primary is False
            and fresh
            and self._clean(view, inventory, episode)
        ):
            episode.step(now, f"{old.cluster} fenced: demoted and cleaned up")
            episode.ended_at = now
            return True
        return False

    @staticmethod
    def _serving(view: VolumeView, inventory: Inventory, episode: Episode, cluster: str) -> bool:
        """The new primary serves: its image is primary and, if the volume had a PVC, its PVC
        is Bound there."""
        if not episode.had_pvc:
            return True
        pvc = view.side(cluster).pvc
        known = inventory.objects.get(pvc) if pvc else None
        return bool(known and known.facts.get("phase") == "Bound")

    def _clean(self, view: VolumeView, inventory: Inventory, episode: Episode) -> bool:
        """The old side is cleaned up: no PVC or PV left there, its VR gone or asking for
        secondary. What ends a switch, and what a lost site owes to be seen fenced."""
        if episode.from_cluster is None:
            return True
        old = view.side(episode.from_cluster)
        vr_ok = old.vr is None or self._vr_wants_secondary(view, inventory, old.cluster)
        # A PVC left there whose PV went first (each kind has its own watch stream, and a PVC
        # can stay Terminating while its pod drains) is not cleaned up: until it goes, it is
        # the switch's transient, not a PVC on the secondary.
        return old.pvc is None and old.unlinked_pvc is None and old.pv is None and vr_ok

    @staticmethod
    def _vr_wants_secondary(view: VolumeView, inventory: Inventory, cluster: str) -> bool:
        vr = view.side(cluster).vr
        known = inventory.objects.get(vr) if vr else None
        return bool(known and known.facts.get("replicationState") == "secondary")


def _promoted_unseen(old: Side, new: Side) -> bool:
    """The survivor's claim to be primary began after the old side's last probe listed it
    (both times on auditd's clock)."""
    changed = new.record.role_changed_at if new.record else None
    if changed is None:
        return False  # primary for as long as auditd has looked: no promotion was seen
    return old.record is None or changed > old.record.seen_at


def _claims_primary(side: Side) -> bool:
    """This side's own record, read now, says its image is primary (a claim the peer cannot
    contradict while the peer is unknown)."""
    return bool(side.storage_known and side.primary is True and side.record and side.record.primary)
