"""vara: Video Activity Recognition Agent.

Turns videos into activity labels, timelines and explanations with local vision-language
models. Import what you need from the subpackages (``vara.tools``, ``vara.agents``,
``vara.eval``, ``vara.finetune``, ``vara.prompts``); importing ``vara`` itself does nothing.
"""

__version__ = "0.1.0"
