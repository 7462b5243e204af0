"""The end-to-end bench (bench/e2e_bench.py), one module per role.

- plan: which events a run sends, to which touchpoints, and when each is due;
- senders: open-loop senders over HTTP and straight to the raw topic;
- observe: what the pipeline produced (the scores and alerts topics, the ``feedback`` table);
- figures: latencies, per-stage rates and alert delays computed from what was sent and seen;
- run: one plan sent, drained and measured, CPU and memory of the watched processes included;
- pipeline: the pipeline under test, one ``voc`` process per service or ``voc up``.
"""
