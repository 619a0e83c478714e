"""Teaching code, apart from the library proper: what the chapters build from scratch, make up,
or probe, and the tooling that runs the chapters.

* :mod:`~hwr_utils.teaching.scratch` -- convolution, pooling, softmax and optimizers from scratch,
  each checked against PyTorch (convolution and softmax chapters);
* :mod:`~hwr_utils.teaching.synthetic` -- photo-like images made from MNIST digits, and
  the book's photos (preprocessing and deployment chapters, tests);
* :mod:`~hwr_utils.teaching.robustness` -- perturbations for robustness curves (evaluation
  chapter);
* :mod:`~hwr_utils.teaching.source` -- ``show_source``, the library's real code shown in a chapter;
* :mod:`~hwr_utils.teaching.notebooks` -- the strict papermill runner, the smoke switch and
  ``load_or_train`` (every chapter);
* :mod:`~hwr_utils.teaching.figures` -- figures drawn from arrays PyTorch computes: convolution
  with padding and stride, pooling, the receptive field (convolution chapter), softmax (softmax
  chapter), CTC alignments ("Reading whole numbers");
* :mod:`~hwr_utils.teaching.colab` -- the repository's address and what derives from it: each
  chapter's "Open in Colab" badge and setup cell, the Colab links (README, introduction).
"""
