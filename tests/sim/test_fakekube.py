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
