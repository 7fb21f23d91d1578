"""BERT-Mini (Turc et al. 2019: 4 layers, hidden 256, 4 heads, intermediate 1024) from scratch, as a body.

A ``transformers`` ``BertModel`` built from a ``BertConfig`` with random initial weights (nothing is
downloaded). Inputs are token ids (B, L) with padding id ``pad_id``; the attention mask is where the
ids are not padding. The embedding is BERT's pooled [CLS] output (dense + tanh on the first token),
(B, hidden), and the loss's head goes on top. ``width``, ``depth``, ``heads`` and
``intermediate`` override 256, 4, 4 and 1024, so tests build tiny BERTs from the same code.
"""

from __future__ import annotations

import torch
from torch import nn


class BertBody(nn.Module):
    """Token ids (B, L) → pooled [CLS] embedding (B, hidden)."""

    def __init__(
        self, vocab_size: int, max_length: int, pad_id: int = 0, hidden: int = 256, layers: int = 4,
        heads: int = 4, intermediate: int = 1024,
    ):  # fmt: skip
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=intermediate,
            max_position_embeddings=max_length,
            pad_token_id=pad_id,
        )
        self.bert = BertModel(config, add_pooling_layer=True)
        self.pad_id = pad_id
        self.embedding_dim = hidden

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()  # served inputs may arrive as floats
        mask = (ids != self.pad_id).long()  # (B, L)
        return self.bert(input_ids=ids, attention_mask=mask).pooler_output  # (B, hidden)
