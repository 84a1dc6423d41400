"""The official Python `kubernetes` client against Tugboat: list, create, patch and watch.

Run with KUBECONFIG pointing at a Tugboat cluster. Exits non-zero on any mismatch.
"""
import os
import sys
import threading
import time

from kubernetes import client, config, watch


def main() -> None:
    config.load_kube_config()
    core = client.CoreV1Api()
    apps = client.AppsV1Api()

    names = [ns.metadata.name for ns in core.list_namespace().items]
    assert "default" in names and "kube-system" in names, names

    core.create_namespaced_config_map(
        "default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"a": "1"})
    )
    patched = core.patch_namespaced_config_map("py-cm", "default", {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}, patched.data

    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="py-web"),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={"app": "py-web"}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": "py-web"}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="127.0.0.1:5000/busybox:1")]),
            ),
        ),
    )
    created = apps.create_namespaced_deployment("default", deployment)
    assert created.spec.strategy.type == "RollingUpdate", created.spec.strategy
    apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 3}})
    assert apps.read_namespaced_deployment("py-web", "default").spec.replicas == 3

    listed = core.list_namespaced_config_map("default", label_selector="from=python")
    assert [c.metadata.name for c in listed.items] == ["py-cm"], listed.items

    seen = []
    w = watch.Watch()

    def produce() -> None:
        time.sleep(0.5)
        core.patch_namespaced_config_map("py-cm", "default", {"metadata": {"labels": {"step": "two"}}})
        core.delete_namespaced_config_map("py-cm", "default")

    threading.Thread(target=produce, daemon=True).start()
    for event in w.stream(core.list_namespaced_config_map, "default", label_selector="from=python", timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            w.stop()
    assert seen == [("ADDED", "py-cm"), ("MODIFIED", "py-cm"), ("DELETED", "py-cm")], seen
    print("python client: ok")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # report and fail the scenario
        print(f"python client scenario failed: {error!r}", file=sys.stderr)
        raise
    # The client's thread pools and pooled connections can fail the interpreter's own shutdown
    # (a non-zero exit after everything passed); the scenario's verdict is already printed.
    sys.stdout.flush()
    os._exit(0)
