"""The ``vara`` subcommands, one module per job: each ``add...(subparsers)`` registers
commands with their flags and the function that runs them. ``vara.cli`` assembles them.

    common.py    exit codes and the flags run and eval share (models, sampling, cache)
    label.py     vara run, vara eval
    info.py      vara probe, labels, strategies, compare
    review.py    vara review
    prompts.py   vara prompts list | show | render | diff
    serve.py     vara serve
    train.py     vara finetune, vara tiny-vlm

Heavy imports happen inside the command functions, which keeps ``vara --help`` fast.
"""
