"""The GPU sensors (gpu: one GPU; gpu_host: a whole node; k8s_gpu: GPUs by pod) and what only they use."""
