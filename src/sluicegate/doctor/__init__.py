"""``sluicegate doctor``: sample a server under load and diagnose what held it back.

* :mod:`~sluicegate.doctor.probe` — the in-process sampler (stdlib only, injected);
* :mod:`~sluicegate.doctor.run` — starts the server, applies the load, stops it;
* :mod:`~sluicegate.doctor.samples` — the trace data model and its JSON;
* :mod:`~sluicegate.doctor.analysis` — findings, sans-IO;
* :mod:`~sluicegate.doctor.report` — the self-contained HTML report.

This package imports nothing heavy on its own: import the module you need.
"""
