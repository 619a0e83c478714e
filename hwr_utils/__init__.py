"""hwr_utils: the library behind *Handwriting Recognition with PyTorch 2*.

The library proper: ``data``, ``augment``, ``models``, ``tasks``, ``config``, ``runtime``,
``checkpoints``, ``train``, ``finetune``, ``preprocess``, ``predict``, ``metrics``, ``export``,
``cli`` (README's "Architecture" section maps what imports what). Measuring code lives in
``hwr_utils.bench``, the book's from-scratch and tooling code in ``hwr_utils.teaching``.
"""

__version__ = "0.2.0"
