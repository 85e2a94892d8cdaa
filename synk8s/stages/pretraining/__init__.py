"""Pre-training study: ResNet-50 on synthetic images (supervised, MoCo v2), fine-tuning, scratch baselines, VOC detection."""
