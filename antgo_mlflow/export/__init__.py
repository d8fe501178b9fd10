"""ONNX export with an ONNX Runtime parity check, and logging the result to MLflow."""
