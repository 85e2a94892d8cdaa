"""VOC detection transfer (Tables 9-10 of the paper): data, Faster R-CNN, training and evaluation.

Modules, each imported on its own (torch is imported only by the ones that train or run models):

- :mod:`.voc_eval`: the PASCAL VOC 2007 evaluator (11-point AP at IoU 0.50 ... 0.95), numpy only.
- :mod:`.voc_data`: the VOC07+12 trainval / VOC07 test data, from a folder, the store or a stand-in.
- :mod:`.trunk`: trunk weights from a pre-training output folder or the ImageNet model cache.
- :mod:`.model`: Faster R-CNN (R50-C4 or R50-FPN) built from torchvision's detection blocks.
- :mod:`.train`: the iteration-based training loop, checkpoints, precise BN and inference.
- :mod:`.tables`: results of several runs laid out as Tables 9 and 10.

The stage that ties them together is :mod:`synk8s.stages.pretraining.detect`; the protocol and the
evaluator's conventions are written up in ``docs/detection.md``.
"""
