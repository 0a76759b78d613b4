"""Evaluation stages: segmentation (FG-ARI, mIoU, mBO) of full-length videos."""
