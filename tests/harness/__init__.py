"""The fault-injection harness (issue 18): several app instances as separate processes over one
Azurite, a seeded workload, injected faults, and the pipeline's promises checked at quiescence.

Modules, one job each:

- ``instance``: one app instance (a process): the queue functions under the host's semantics
  (bench/queue_host.py's listener, in-process invoker, short renewed leases) and the HTTP
  functions behind the host's HTTP front end (function key enforced);
- ``journal``: what each instance writes about its deliveries, and reading it back;
- ``storage_proxy``: Storage answering 500/503 or hanging for a while, and the commits it saw;
- ``cluster``: starting, killing (SIGKILL), pausing (SIGSTOP) and restarting instances;
- ``workload``: the seeded runs, imports, retried POSTs and webhooks, and driving them;
- ``faults``: the seeded fault schedule, and applying it;
- ``invariants``: the promises, checked against what Storage, the fake and the queues hold;
- ``session``: one whole seeded session; ``soak``: the long run's command line and summary.
"""
