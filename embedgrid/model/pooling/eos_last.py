from __future__ import annotations

from embedgrid.model.pooling.base import Pooling, last_token


class EosLastPooling(Pooling):
    """Hidden state of the EOS token the encoder appends to every text: the last real token, either padding side."""

    def forward(self, hidden_states, attention_mask, pool_mask):
        return last_token(hidden_states[-1], attention_mask)
