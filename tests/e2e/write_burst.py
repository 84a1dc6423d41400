"""Creates ConfigMaps from 8 threads as fast as the server acknowledges them, appending each
acknowledged name to the file given as the first argument (flushed per line), until the server
goes away. Used to prove that a kill -9 loses no acknowledged write."""
import sys
import threading

from kubernetes import client, config

config.load_kube_config()
lock = threading.Lock()
out = open(sys.argv[1], "a", buffering=1)


def writer(worker: int) -> None:
    core = client.CoreV1Api()
    for i in range(100000):
        name = f"burst-{worker}-{i}"
        try:
            core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name)))
        except Exception:
            return
        with lock:
            out.write(name + "\n")


threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
