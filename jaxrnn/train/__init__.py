"""Training: masked losses and metrics, an optax train step that skips non-finite
updates, evaluation, early stopping, and truncated BPTT over one long stream.

Everything here is a pure function or a small factory of jitted pure functions, in
the style of optax: the training state is a :class:`TrainState` NamedTuple, the
optimiser any ``optax.GradientTransformation`` (learning-rate schedules are optax's
schedules, passed as its ``learning_rate``).

Masks: wherever a ``mask`` is taken it may be ``None`` (all entries count), or a
bool / 0-1 array whose shape is a leading part of the per-entry shape, typically
``[B, T]`` (per step) or ``[B]`` (per sequence). Non-zero entries count. A mean over
no valid entries is 0.0, not NaN, so a fully padded batch adds nothing.

Data parallelism: the step factories take ``mesh=``, a mesh from :func:`make_mesh`
whose axis :data:`DATA_AXIS` the batch's leading axis is split over; parameters
and optimiser state are replicated and XLA reduces the gradients across devices
(:mod:`jaxrnn.train._parallel`). The losses are those of one device, up to float
rounding. :func:`shard_batch` and :func:`replicate` place arrays by hand.

The implementation lives in private modules, one per concept: ``_losses`` (losses
and metrics), ``_steps`` (train state, train and eval steps, evaluation),
``_early_stopping``, ``_streams`` (truncated BPTT over a stream), ``_parallel``
(data parallelism) and ``_checkpoint`` (the training loop's checkpoint files).
"""

from jaxrnn.train._early_stopping import MODES as MODES
from jaxrnn.train._early_stopping import EarlyStopping as EarlyStopping
from jaxrnn.train._early_stopping import early_stopping_update as early_stopping_update
from jaxrnn.train._losses import LOSSES as LOSSES
from jaxrnn.train._losses import PrecisionRecallF1 as PrecisionRecallF1
from jaxrnn.train._losses import accuracy as accuracy
from jaxrnn.train._losses import confusion_matrix as confusion_matrix
from jaxrnn.train._losses import cross_entropy as cross_entropy
from jaxrnn.train._losses import mse as mse
from jaxrnn.train._losses import precision_recall_f1 as precision_recall_f1
from jaxrnn.train._losses import rmse as rmse
from jaxrnn.train._parallel import DATA_AXIS as DATA_AXIS
from jaxrnn.train._parallel import make_mesh as make_mesh
from jaxrnn.train._parallel import replicate as replicate
from jaxrnn.train._parallel import shard_batch as shard_batch
from jaxrnn.train._steps import TrainState as TrainState
from jaxrnn.train._steps import default_optimizer as default_optimizer
from jaxrnn.train._steps import evaluate as evaluate
from jaxrnn.train._steps import init_state as init_state
from jaxrnn.train._steps import make_eval_step as make_eval_step
from jaxrnn.train._steps import make_train_step as make_train_step
from jaxrnn.train._streams import StreamParams as StreamParams
from jaxrnn.train._streams import make_stream_train_step as make_stream_train_step
from jaxrnn.train._streams import stream_chunks as stream_chunks
from jaxrnn.train._streams import stream_forward as stream_forward

__all__ = [
    "DATA_AXIS",
    "EarlyStopping",
    "LOSSES",
    "MODES",
    "PrecisionRecallF1",
    "StreamParams",
    "TrainState",
    "accuracy",
    "confusion_matrix",
    "cross_entropy",
    "default_optimizer",
    "early_stopping_update",
    "evaluate",
    "init_state",
    "make_eval_step",
    "make_mesh",
    "make_stream_train_step",
    "make_train_step",
    "mse",
    "precision_recall_f1",
    "replicate",
    "rmse",
    "shard_batch",
    "stream_chunks",
    "stream_forward",
]
