"""Training pipeline: data, fine-tuning, ONNX export, INT8 quantization, evaluation.

Only `train` and `export` need torch; `data`, `metrics` and `evaluate` run on the
serving dependencies alone.
"""
