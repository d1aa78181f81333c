"""The article's experiments, reproduced: a scenario app and ``sluicegate demo``.

* :mod:`sluicegate.demo.app`: one ASGI app with every scenario of the article;
* :mod:`sluicegate.demo.runner`: runs each scenario under the doctor with a slow client;
* :mod:`sluicegate.demo.report`: the table, the JSON figures and the HTML overlay;
* :mod:`sluicegate.demo.cli`: ``sluicegate demo``.
"""
