"""jaxrnn: recurrent neural networks in JAX as pure functions, with hand-written BPTT."""

from jaxrnn._core.cells import Cell as Cell
from jaxrnn._core.cells import CellParams as CellParams
from jaxrnn._core.cells import HiddenState as HiddenState
from jaxrnn._core.cells import LayerNormLSTMParams as LayerNormLSTMParams
from jaxrnn._core.cells import LinearRecurrence as LinearRecurrence
from jaxrnn._core.cells import LSTMState as LSTMState
from jaxrnn._core.cells import Readout as Readout
from jaxrnn._core.cells import ReadoutParams as ReadoutParams
from jaxrnn._core.cells import elman as elman
from jaxrnn._core.cells import gru as gru
from jaxrnn._core.cells import layer_norm_lstm as layer_norm_lstm
from jaxrnn._core.cells import lstm as lstm
from jaxrnn._core.cells import readout as readout
from jaxrnn._core.linear_cells import LRUParams as LRUParams
from jaxrnn._core.linear_cells import LRUState as LRUState
from jaxrnn._core.linear_cells import MinRNNParams as MinRNNParams
from jaxrnn._core.linear_cells import lru as lru
from jaxrnn._core.linear_cells import mingru as mingru
from jaxrnn._core.linear_cells import minlstm as minlstm
from jaxrnn._core.models import GRU as GRU
from jaxrnn._core.models import LSTM as LSTM
from jaxrnn._core.models import RNN as RNN
from jaxrnn._core.models import Bidirectional as Bidirectional
from jaxrnn._core.models import StackedRNN as StackedRNN
from jaxrnn._core.newton import DEER as DEER
from jaxrnn._core.newton import ELK as ELK
from jaxrnn._core.newton import QuasiDEER as QuasiDEER
from jaxrnn._core.newton import QuasiELK as QuasiELK
from jaxrnn._core.newton import SolverInfo as SolverInfo
from jaxrnn._core.rnn import check_bptt as check_bptt
from jaxrnn._core.rnn import rnn as rnn
from jaxrnn._core.strategy import default_unroll as default_unroll
from jaxrnn._interop.torch import from_torch as from_torch
from jaxrnn._interop.torch import to_torch as to_torch
from jaxrnn._kernels.registry import CPUKernel as CPUKernel
from jaxrnn._kernels.registry import Pallas as Pallas

__version__ = "0.1.0"

__all__ = [
    "Bidirectional",
    "Cell",
    "CellParams",
    "DEER",
    "ELK",
    "GRU",
    "HiddenState",
    "LSTM",
    "LSTMState",
    "LRUParams",
    "LRUState",
    "LayerNormLSTMParams",
    "LinearRecurrence",
    "MinRNNParams",
    "Pallas",
    "CPUKernel",
    "QuasiDEER",
    "QuasiELK",
    "RNN",
    "Readout",
    "ReadoutParams",
    "SolverInfo",
    "StackedRNN",
    "check_bptt",
    "default_unroll",
    "elman",
    "from_torch",
    "gru",
    "layer_norm_lstm",
    "lru",
    "lstm",
    "mingru",
    "minlstm",
    "readout",
    "rnn",
    "to_torch",
]
