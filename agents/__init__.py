"""LangGraph agents: strategies as graphs over the tools (the only package importing langgraph).

``graphspec.py`` says what a graph is (``GraphSpec``, ``linear_graph``) and ``registry.py``
holds every graph, one spec each; ``nodes.py``, ``vision.py``, ``judge.py``, ``classify.py``
and ``agentic.py`` are node functions; ``state.py``/``context.py`` what flows through a
graph, ``frames.py`` the frame store, ``models.py`` the model pool; ``strategies.py`` loads
strategy YAML; ``runner.py`` runs a strategy over videos, with ``rundir.py`` (resume,
outputs) and ``inputs.py`` (videos -> windows).
"""
