"""Model bundles (the contract between training and runtime) and the ONNX Runtime detector."""
