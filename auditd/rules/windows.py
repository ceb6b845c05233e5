"""DR windows: a failover or relocate in progress, per volume, and the episodes they leave.

A window opens when a volume leaves its steady state (exactly one primary) in an orderly way:
both images non-primary (demoted, before the promote), or the primary's VolumeReplication
asking for `secondary`. It closes when exactly one side is primary again; the episode records
from where to where, its steps with their times, and the RTO. Inside a window the expected
transients (up+unknown on both sides, the PVC on the new primary before the old one is cleaned
up) are not violations; a window open past its deadline is one (dr-window-overrun).

Pure: views and times in, episode changes out. The store persists them (open ones too), so a
restart resumes an open window instead of forgetting it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from auditd.inventory.inventory import Inventory
from auditd.rules.views import DRPC_MOVING, VolumeId, VolumeView


@dataclass
class Episode:
    volume: VolumeId
    started_at: datetime
    from_cluster: str | None
    trigger: str
    steps: list[tuple[datetime, str]] = field(default_factory=list)
    to_cluster: str | None = None
    promoted_at: datetime | None = None  # the new side became primary: the RTO's end
    ended_at: datetime | None = None  # the old side was cleaned up too: the window's end
    id: int | None = None  # the stored row, once written

    @property
    def rto_seconds(self) -> float | None:
        return (self.promoted_at - self.started_at).total_seconds() if self.promoted_at else None

    def step(self, at: datetime, what: str) -> None:
        if not self.steps or self.steps[-1][1] != what:
            self.steps.append((at, what))


def _state(view: VolumeView) -> str:
    return " / ".join(
        f"{s.cluster} {(s.image or {}).get('state', 'not listed')}" for s in view.sides
    )


class WindowTracker:
    def __init__(self) -> None:
        self.open: dict[VolumeId, Episode] = {}
        self._steady_primary: dict[VolumeId, str] = {}
        self.changed: list[Episode] = []  # opened, stepped or closed since the last drain

    def resume(self, episode: Episode) -> None:
        self.open[episode.volume] = episode
        if episode.from_cluster:
            self._steady_primary[episode.volume] = episode.from_cluster

    def drain(self) -> list[Episode]:
        out, self.changed = self.changed, []
        return out

    def observe(self, view: VolumeView, inventory: Inventory, now: datetime) -> Episode | None:
        """Update the volume's window from its current view; return the open window, if any."""
        vid = view.id
        primary = view.primary_cluster
        episode = self.open.get(vid)
        previous = self._steady_primary.get(vid)
        if episode is None:
            trigger = None
            moving = sorted(set(view.drpc_phases) & DRPC_MOVING)
            if moving:
                trigger = f"drpc {moving[0]}"
            elif view.in_transition:
                trigger = "demote"
            elif previous is not None and self._vr_wants_secondary(view, inventory, previous):
                trigger = "replicationState secondary"
            elif primary is not None and previous is not None and primary != previous:
                trigger = "promote"  # the switch happened between two looks: a zero-length window
            if trigger is not None:
                episode = Episode(vid, now, previous, trigger)
                episode.step(now, _state(view))
                self.open[vid] = episode
                self.changed.append(episode)
        if episode is not None:
            before = len(episode.steps)
            episode.step(now, _state(view))
            steady = (
                primary is not None
                and not (
                    primary == episode.from_cluster
                    and self._vr_wants_secondary(view, inventory, primary)
                )
                and not set(view.drpc_phases) & DRPC_MOVING
            )
            if steady and primary is not None:
                if episode.promoted_at is None:
                    episode.to_cluster, episode.promoted_at = primary, now
                    episode.step(now, f"{primary} primary")
                # The window ends when Kubernetes has caught up too: the old primary's PVC, PV
                # and VR are gone (or its VR asks for secondary). Until then they are expected.
                if primary == episode.from_cluster or self._clean(view, inventory, episode):
                    episode.ended_at = now
                    del self.open[vid]
                    if episode not in self.changed:
                        self.changed.append(episode)
                    self._steady_primary[vid] = primary
                    return None
            if len(episode.steps) != before and episode not in self.changed:
                self.changed.append(episode)
            return episode
        if primary is not None:
            self._steady_primary[vid] = primary
        return None

    def _clean(self, view: VolumeView, inventory: Inventory, episode: Episode) -> bool:
        if episode.from_cluster is None:
            return True
        old = view.side(episode.from_cluster)
        vr_ok = old.vr is None or self._vr_wants_secondary(view, inventory, old.cluster)
        return old.pvc is None and old.pv is None and vr_ok

    @staticmethod
    def _vr_wants_secondary(view: VolumeView, inventory: Inventory, cluster: str) -> bool:
        vr = view.side(cluster).vr
        known = inventory.objects.get(vr) if vr else None
        return bool(known and known.facts.get("replicationState") == "secondary")
