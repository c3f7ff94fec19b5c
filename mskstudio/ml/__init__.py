"""Learning jobs: DeepCluster, training, segmentation, retrieval, explanation, export."""
