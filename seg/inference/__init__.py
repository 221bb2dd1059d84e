"""Using a checkpoint: load it, predict masks, evaluate on a split, export to ONNX or TorchScript."""
