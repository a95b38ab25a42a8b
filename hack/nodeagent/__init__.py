"""The local node agent: a stand-in for kubelet (and the scheduler) on one fake node.

    python hack/nodeagent.py --kubeconfig K --node-name N [--namespace NS ...]
                             [--logs-dir D] [--restart-backoff-seconds 10]

It registers Node N (Ready, heartbeat every 10 s), binds unscheduled pods to N through the
`pods/binding` subresource, and runs every container of the pods bound to N as a local process:
`command + args` exec'd directly (no shell, own process group, so the worker is "PID 1"), with
cwd = the repository root, PATH = this venv's bin first, PYTHONPATH = the repository root, and
the pod's env (value, secretKeyRef, configMapKeyRef, fieldRef, envFrom). There are no images.

Ports: all pods share the host's loopback, so every declared containerPort gets a free host
port per pod. An env var named by --port-env (default ARQFLEET_HTTP_PORT) whose value is a
declared containerPort is rewritten to that host port, probes go to it, and the mapping is
written on the pod as the annotation `nodeagent.arqfleet.io/host-ports` ({"http": 41234}).

Like kubelet it reports phase, podIP/hostIP 127.0.0.1, containerStatuses (state, lastState with
exit code, and the log tail as message only under terminationMessagePolicy FallbackToLogsOnError
with a non-zero exit: there is no termination message file, so policy File gives no message),
conditions from the httpGet/tcpSocket readiness probe, restarts on liveness failure and on exit
(restartPolicy Always/OnFailure) with exponential back-off (CrashLoopBackOff). A pod with a
deletionTimestamp gets SIGTERM, deletionGracePeriodSeconds to exit, then SIGKILL, and is then
removed (DELETE gracePeriodSeconds=0 with a uid precondition). On SIGTERM/SIGINT the agent stops
its processes the same way (--shutdown-grace-seconds) and marks the Node NotReady.
Init containers, volumes, images and resource limits are ignored. Everything is loopback.
"""
