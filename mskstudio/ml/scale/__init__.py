"""Scale-out: torchrun/DistributedDataParallel training and the read-only training snapshot."""
