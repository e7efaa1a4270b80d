"""An example airisd plugin package: one input (random_walk) and one output (jsonl_file).

Each plugin lives in its own subpackage with its README.md and sample.toml, and is named in the
``airisd`` entry-point group of pyproject.toml.
"""

__version__ = "0.2.0"
