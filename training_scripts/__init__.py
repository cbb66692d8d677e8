"""PyTorch workloads and the shared training loop they use."""
