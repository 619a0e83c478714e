"""hwr_utils: the library behind *Handwriting Recognition with PyTorch 2*.

Chapters import what they need from the submodules: ``data``, ``models``, ``train``,
``preprocess``, ``metrics``, ``predict``.
"""

__version__ = "0.1.0"
