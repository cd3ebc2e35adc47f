"""The report of the classification tasks (digits, text): accuracy, macro F1 and the confusion matrix."""

from __future__ import annotations

import numpy as np

from jaxrnn import train
from jaxrnn._app import plotting


def classification_report(predicted, truth, classes: int, out_dir, *, title: str, class_names=None) -> dict:
    """Test accuracy, macro F1, the confusion matrix and its plot ``confusion.png``."""
    confusion = np.asarray(train.confusion_matrix(predicted, truth, classes))
    scores = train.precision_recall_f1(predicted, truth, classes)
    size = 5 if class_names is None else 1.5 + 0.6 * classes
    fig, ax = plotting.pyplot().subplots(figsize=(size, size))
    ax.imshow(confusion, cmap="Blues")
    for (row, col), count in np.ndenumerate(confusion):
        ax.text(
            col, row, str(count), ha="center", va="center", color="white" if count > confusion.max() / 2 else "black"
        )
    ax.set(xlabel="predicted", ylabel="true", xticks=range(classes), yticks=range(classes), title=title)
    if class_names is not None:
        ax.set(xticklabels=class_names, yticklabels=class_names)
        ax.tick_params(axis="x", labelrotation=90)
    return {
        "test_accuracy": float(np.mean(predicted == truth)),
        "test_macro_f1": float(scores.f1),
        "confusion_matrix": confusion.tolist(),
        "plot": plotting.save_figure(fig, out_dir, "confusion.png", bbox_inches="tight"),
    }
