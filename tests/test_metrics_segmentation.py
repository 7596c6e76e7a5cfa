import math

import torch

from robust_seg import IGNORE_INDEX
from robust_seg.metrics.segmentation import confusion_matrix, iou_per_class, mean_iou, pixel_accuracy


def test_pixel_accuracy_per_image_ignores_unlabelled():
    labels = torch.tensor([[[0, 1], [1, IGNORE_INDEX]], [[2, 2], [2, 2]]])
    predictions = torch.tensor([[[0, 0], [1, 2]], [[2, 0], [0, 0]]])
    # image 0: 2 correct of 3 labelled (the ignored pixel's wrong prediction does not count); image 1: 1 of 4
    assert torch.allclose(pixel_accuracy(predictions, labels), torch.tensor([2 / 3, 1 / 4], dtype=torch.float64))


def test_confusion_and_iou_by_hand():
    labels = torch.tensor([[0, 0, 1, 1, IGNORE_INDEX]])
    predictions = torch.tensor([[0, 1, 1, 1, 0]])
    confusion = confusion_matrix(predictions, labels, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    iou = iou_per_class(confusion)
    assert math.isclose(iou[0].item(), 1 / 2) and math.isclose(iou[1].item(), 2 / 3) and math.isnan(iou[2].item())
    assert math.isclose(mean_iou(confusion), (1 / 2 + 2 / 3) / 2)  # absent class 2 is not averaged
