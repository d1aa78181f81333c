"""Injected by ``sluicegate doctor``: start the probe in every Python process it runs.

``sluicegate doctor`` puts this directory first on ``PYTHONPATH``, so Python imports
this module at start-up instead of any other ``sitecustomize``. It then

1. runs the ``sitecustomize`` it shadows (the next one on ``sys.path``), so the
   environment of the server is unchanged;
2. loads ``probe.py`` from the file next to this package by path, without importing
   sluicegate (the server's interpreter may lack its dependencies), and installs it
   when ``SLUICEGATE_DOCTOR_OUT`` is set.

A failure here is printed once and never stops the server.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _chain() -> None:
    """Execute the ``sitecustomize`` this module shadows, if there is one."""
    others = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sluicegate_chained_sitecustomize"] = module
    spec.loader.exec_module(module)


def _start_probe() -> None:
    if not os.environ.get("SLUICEGATE_DOCTOR_OUT"):
        return
    path = os.path.join(os.path.dirname(_HERE), "probe.py")
    spec = importlib.util.spec_from_file_location("_sluicegate_doctor_probe", path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sluicegate_doctor_probe"] = module
    spec.loader.exec_module(module)
    module.install()


for _step in (_chain, _start_probe):
    try:
        _step()
    except Exception as _exc:  # never break the server under test
        print(f"sluicegate doctor: sitecustomize {_step.__name__}: {_exc!r}", file=sys.stderr)
