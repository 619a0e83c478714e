"""Measuring code, apart from the library proper: what ``benchmarks/`` and the chapters that
report speed use.

* :mod:`~hwr_utils.bench.recipes` -- training recipes raced to test-accuracy targets (training
  chapter, ``benchmarks/train_speed.py``);
* :mod:`~hwr_utils.bench.engines` -- inference engines, latency, throughput and int8 (deployment
  chapter, ``benchmarks/infer_speed.py``);
* :mod:`~hwr_utils.bench.numbers` -- the number reader scored on other hands, and the training
  writers' numbers it is chosen on (``benchmarks/real_numbers.py``,
  ``benchmarks/number_reader_augment.py``).
"""
