"""LangGraph agents: strategies as graphs over the tools (the only package importing langgraph).

``strategies.py`` loads strategy YAML, ``graph.py`` holds the registry of graph builders,
``nodes.py`` the node functions, ``state.py``/``context.py`` what flows through a graph, and
``runner.py`` runs a strategy over videos, writing predictions and timelines.
"""
