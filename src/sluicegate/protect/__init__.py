"""Protection hooks the engine calls: the slow-reader guard and admission budgets.

They implement the protocols in :mod:`sluicegate.interfaces`; neither imports the
response that calls it.
"""
