from __future__ import annotations

from embedgrid.model.pooling.base import Pooling, at_least_float32


class WeightedMeanPooling(Pooling):
    """Position-weighted mean of the last layer (SGPT; llm2vec's and GritLM's ``weighted_mean``).

    A token's weight is its 1-based position among the text's real tokens, counted from its first real token on
    either padding side, so later tokens (which a causal model has let see more of the text) weigh more. Tokens
    outside ``pool_mask`` (padding, an excluded prompt prefix) get weight 0 and the rest keep their positions, as
    in sentence-transformers' ``Pooling(pooling_mode="weightedmean")``, which is how this head exports.
    """

    def forward(self, hidden_states, attention_mask, pool_mask):
        states = at_least_float32(hidden_states[-1])
        positions = attention_mask.long().cumsum(dim=1)  # 1..n over the real tokens, wherever the padding sits
        keep = pool_mask.bool() & attention_mask.bool()
        weights = positions.masked_fill(~keep, 0).to(states.dtype).unsqueeze(-1)
        # zeroed, not multiplied by 0: a non-finite state at a pad position cannot leak
        total = (states.masked_fill(~keep.unsqueeze(-1), 0.0) * weights).sum(dim=-2)
        return total / weights.sum(dim=-2).clamp(min=1)
