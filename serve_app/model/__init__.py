"""The model at run time: preprocessing, language, ONNX predictor, batching, registry."""
