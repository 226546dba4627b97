"""Block registration scripts, run as modules from the repository root:
`python -m blocks.register_<kind> --help`.
"""
