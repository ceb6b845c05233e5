"""The fake API server answers the real client like a real server would."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client, config, dynamic
from kubernetes.client.rest import ApiException

from auditd.sim import objects
from auditd.sim.fakekube import FakeKubeAPI
from auditd.sources.kube.kinds import CEPH_BLOCK_POOL, PV, PVC, VR


def api_for(clusters: dict[str, Any], ctx: str) -> Any:
    return config.new_client_from_config(config_file=str(clusters["kubeconfig"]), context=ctx)


def test_typed_client_lists_models(clusters: dict[str, Any]) -> None:
    clusters["dr1"].create(PVC, objects.pvc("a", "ns", volume="pv-a"))
    clusters["dr1"].create(PV, objects.pv("pv-a", "ns", "a", "img-a"))
    core = client.CoreV1Api(api_for(clusters, "dr1"))
    pvcs = core.list_namespaced_persistent_volume_claim("ns")
    assert [p.metadata.name for p in pvcs.items] == ["a"] and pvcs.items[
        0
    ].spec.volume_name == "pv-a"
    assert core.list_persistent_volume().items[0].spec.csi.volume_attributes["imageName"] == "img-a"
    assert (
        client.CoreV1Api(api_for(clusters, "dr2"))
        .list_namespaced_persistent_volume_claim("ns")
        .items
        == []
    )
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_persistent_volume_claim("missing", "ns")
    assert exc.value.status == 404


def test_custom_resources_and_discovery(clusters: dict[str, Any]) -> None:
    fake: FakeKubeAPI = clusters["dr1"]
    fake.create(VR, objects.vr("a", "ns", "a"))
    api = api_for(clusters, "dr1")
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        VR.group, VR.version, "ns", VR.plural
    )["items"]
    assert items[0]["kind"] == "VolumeReplication"  # CR list items keep kind/apiVersion
    dyn = dynamic.DynamicClient(api)
    assert dyn.resources.get(api_version=VR.api_version, kind="VolumeReplication").namespaced
    assert not fake.has_resource(CEPH_BLOCK_POOL.plural)
    fake.add_resource(CEPH_BLOCK_POOL)
    assert (
        client.CustomObjectsApi(api).list_cluster_custom_object(
            CEPH_BLOCK_POOL.group, CEPH_BLOCK_POOL.version, CEPH_BLOCK_POOL.plural
        )["items"]
        == []
    )


def test_watch_from_compacted_version_is_one_410_event(clusters: dict[str, Any]) -> None:
    fake: FakeKubeAPI = clusters["dr1"]
    fake.create(PVC, objects.pvc("a", "ns"))
    fake.compact()
    resp = client.CoreV1Api(
        api_for(clusters, "dr1")
    ).list_persistent_volume_claim_for_all_namespaces(
        watch=True, resource_version="1000", _preload_content=False
    )
    body = resp.data.decode()
    assert resp.status == 200
    assert body.count("\n") == 1 and '"code":410' in body and '"reason":"Expired"' in body


def _pages(core: Any, **kw: Any) -> tuple[list[str], list[int | None]]:
    """Every page of a paginated list through the real client: the names, in the order served,
    and each page's remainingItemCount."""
    names: list[str] = []
    remaining: list[int | None] = []
    token = None
    while True:
        page = core.list_persistent_volume_claim_for_all_namespaces(limit=3, _continue=token, **kw)
        names += [f"{p.metadata.namespace}/{p.metadata.name}" for p in page.items]
        remaining.append(page.metadata.remaining_item_count)
        token = page.metadata._continue
        if not token:
            return names, remaining


def test_pages_come_in_key_order_with_what_remains_as_a_real_server_serves_them(
    clusters: dict[str, Any],
) -> None:
    """Pages follow etcd's key order ("namespace/name" as strings), found by bisection; a
    continued list whose snapshot has been written since is served from that snapshot."""
    fake: FakeKubeAPI = clusters["dr1"]
    paths = ["a/x", "a-b/y", "a.b/z", "a/b.c", "b/a", "a/a-1", "a/a", "c/q"]
    for path in paths:
        ns, name = path.split("/")
        pvc = objects.pvc(name, ns, volume=f"pv-{name}")
        pvc["metadata"]["labels"] = {"keep": "yes" if name < "x" else "no"}
        fake.create(PVC, pvc)
    core = client.CoreV1Api(api_for(clusters, "dr1"))
    names, remaining = _pages(core)
    assert names == sorted(paths)
    assert remaining == [5, 2, None]
    kept, remaining = _pages(core, label_selector="keep=yes")
    assert kept == sorted(p for p in paths if p.split("/")[1] < "x")
    assert remaining == [None, None]  # two pages; with a selector no count is served

    ns_a = core.list_namespaced_persistent_volume_claim("a", limit=2)
    assert [p.metadata.name for p in ns_a.items] == ["a", "a-1"]
    assert ns_a.metadata.remaining_item_count == 2  # "a-b" and "a.b" are other namespaces

    first = core.list_persistent_volume_claim_for_all_namespaces(limit=3)
    fake.delete(PVC, "b", "a")  # after the snapshot: the continued list still holds it
    rest = core.list_persistent_volume_claim_for_all_namespaces(
        limit=10, _continue=first.metadata._continue
    )
    assert [f"{p.metadata.namespace}/{p.metadata.name}" for p in rest.items] == sorted(paths)[3:]
    assert [
        f"{p.metadata.namespace}/{p.metadata.name}"
        for p in core.list_persistent_volume_claim_for_all_namespaces().items
    ] == sorted(set(paths) - {"b/a"})
