"""Prompt templates, label sets and answer schemas (data), with their loader.

Templates are ``<id>.v<N>.yaml`` files beside this module; label sets live in ``labelsets/``.
See ``vara.prompts.loader`` for the file format and provenance rules.
"""
