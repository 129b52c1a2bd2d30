"""A SpeechBrain ECAPA checkpoint with random weights, written in the hub model's pretrained layout.

The hub's weights cannot be fetched on offline machines; the tests and the benchmark load this instead, the
same way production loads the real one, to check what holds for any weights (loading, speed, the fast path's
agreement with the plain model).
"""

from __future__ import annotations

from pathlib import Path

import torch

# The layout of speechbrain/spkrec-ecapa-voxceleb's hyperparams.yaml; `pretrained_path` names the hub, as the
# downloaded file does. Channel sizes are parameters: the production model is C=1024.
HYPERPARAMS = """\
pretrained_path: speechbrain/spkrec-ecapa-voxceleb
n_mels: 80
out_n_neurons: {classes}
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [{c}, {c}, {c}, {c}, {c3}]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: {attention}
    lin_neurons: 192
classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 192
    out_neurons: !ref <out_n_neurons>
mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def hyperparams(channels: int = 1024, attention: int = 128, classes: int = 7205) -> str:
    return HYPERPARAMS.format(c=channels, c3=3 * channels, attention=attention, classes=classes)


def write_random_checkpoint(
    directory: Path, *, channels: int = 1024, attention: int = 128, classes: int = 7205, seed: int = 7
) -> dict[str, torch.Tensor]:
    """Random ECAPA weights saved the way SpeechBrain's trainer saves them; returns the embedding weights."""
    from hyperpyyaml import load_hyperpyyaml  # noqa: PLC0415  hyperpyyaml: speechbrain's, only for this checkpoint

    text = hyperparams(channels, attention, classes)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hyperparams.yaml").write_text(text)
    torch.manual_seed(seed)
    loaded = load_hyperpyyaml(text)
    torch.save(loaded["embedding_model"].state_dict(), directory / "embedding_model.ckpt")
    torch.save(loaded["classifier"].state_dict(), directory / "classifier.ckpt")
    norm = loaded["mean_var_norm_emb"]
    norm(torch.randn(4, 1, 192), torch.ones(4))  # a trained normaliser has statistics to save
    norm._save(directory / "mean_var_norm_emb.ckpt")
    labels = loaded["label_encoder"]
    labels.update_from_iterable([f"id{n:05d}" for n in range(classes)])
    labels.save(directory / "label_encoder.txt")
    return {k: v.clone() for k, v in loaded["embedding_model"].state_dict().items()}
