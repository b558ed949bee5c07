"""Training (extra `train`): torch model on normal data → ONNX → static int8 → bundle.

Imported only by `edge-agent train`; a gateway never needs torch.
"""
