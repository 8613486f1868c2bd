"""int8 post-training quantization (dynamic range) and the deployable artifact file."""

from acoustic_lottery.quantization.artifact import (
    DeployableSystem,
    LoadedSystem,
    inspect_artifact,
    load_artifact,
    save_artifact,
)
from acoustic_lottery.quantization.int8 import (
    QuantizedState,
    QuantizedTensor,
    dequantize,
    float_state,
    fold_batchnorm,
    quantize_model,
    quantized_model,
    quantized_size_report,
)

__all__ = [
    "DeployableSystem",
    "LoadedSystem",
    "inspect_artifact",
    "load_artifact",
    "save_artifact",
    "QuantizedState",
    "QuantizedTensor",
    "dequantize",
    "float_state",
    "fold_batchnorm",
    "quantize_model",
    "quantized_model",
    "quantized_size_report",
]
