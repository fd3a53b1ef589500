"""induction-toolkit: train small transformers, watch induction heads form, and test the circuit.

Importing the package is cheap; submodules (``models``, ``checkpoints``, ``scores`` …) import torch
and TransformerLens when first used.
"""

__version__ = "0.1.0"
