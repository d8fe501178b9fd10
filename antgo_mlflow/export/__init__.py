"""Export: ``onnx.py`` (ONNX export + ONNX Runtime parity check, MLflow logging) and
``workflow.py`` (a run or checkpoint -> a checked, logged ONNX model: ``export_model``)."""
