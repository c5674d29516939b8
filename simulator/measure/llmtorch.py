"""The torch modules of :mod:`simulator.measure.llmbench`'s decoder (imported only when one is built:
torch is a heavy import). Names follow the Hugging Face implementations (``q_proj``,
``input_layernorm`` ...), so a reader can set them side by side."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .llmbench import Activation, DecoderDims, KvCache


class RMSNorm(nn.Module):
    """Root-mean-square layer norm with a learnt scale (Llama, Qwen2, Phi-3, Gemma-2)."""

    def __init__(self, size: int, eps: float, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype))
        self.eps = eps

    def forward(self, x):
        # the sum of squares in float32 (as the reference implementations do), then back
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Attention(nn.Module):
    """Grouped-query self-attention with rotary positions, reading and extending the KV cache."""

    def __init__(self, dims: DecoderDims, dtype):
        super().__init__()
        self.dims = dims
        q_out, kv_out = dims.heads * dims.head_dim, dims.kv_heads * dims.head_dim
        self.split = (q_out, kv_out, kv_out)
        if dims.fused:
            self.qkv_proj = nn.Linear(dims.hidden_size, q_out + 2 * kv_out, bias=dims.qkv_bias, dtype=dtype)
        else:
            self.q_proj = nn.Linear(dims.hidden_size, q_out, bias=dims.qkv_bias, dtype=dtype)
            self.k_proj = nn.Linear(dims.hidden_size, kv_out, bias=dims.qkv_bias, dtype=dtype)
            self.v_proj = nn.Linear(dims.hidden_size, kv_out, bias=dims.qkv_bias, dtype=dtype)
        self.o_proj = nn.Linear(q_out, dims.hidden_size, bias=False, dtype=dtype)

    def _qkv(self, x):
        if self.dims.fused:
            return torch.split(self.qkv_proj(x), self.split, dim=-1)
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(self, x, cache: KvCache, layer: int, cos, sin, mask):
        d = self.dims
        batch, seq, _ = x.shape
        q, k, v = self._qkv(x)
        q = q.reshape(batch, seq, d.heads, d.head_dim).transpose(1, 2)
        k = k.reshape(batch, seq, d.kv_heads, d.head_dim).transpose(1, 2)
        v = v.reshape(batch, seq, d.kv_heads, d.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        keys, values = cache.append(layer, k.to(cache.dtype), v.to(cache.dtype))      # [B, kv, L, d]
        group = d.heads // d.kv_heads
        # a group's query heads stacked on the query axis: each key / value head is read once
        qg = q.reshape(batch, d.kv_heads, group * seq, d.head_dim).to(cache.dtype)
        scores = torch.matmul(qg, keys.transpose(-1, -2)) * (1.0 / math.sqrt(d.head_dim))
        if mask is not None:
            scores = scores + mask
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs, values).to(x.dtype)                                 # [B, kv, g*S, d]
        out = out.reshape(batch, d.heads, seq, d.head_dim).transpose(1, 2).reshape(batch, seq, -1)
        return self.o_proj(out)


class Mlp(nn.Module):
    """The gated MLP: down(act(gate(x)) * up(x))."""

    def __init__(self, dims: DecoderDims, dtype):
        super().__init__()
        self.fused = dims.fused
        if dims.fused:
            self.gate_up_proj = nn.Linear(dims.hidden_size, 2 * dims.intermediate_size, bias=False, dtype=dtype)
        else:
            self.gate_proj = nn.Linear(dims.hidden_size, dims.intermediate_size, bias=False, dtype=dtype)
            self.up_proj = nn.Linear(dims.hidden_size, dims.intermediate_size, bias=False, dtype=dtype)
        self.down_proj = nn.Linear(dims.intermediate_size, dims.hidden_size, bias=False, dtype=dtype)
        tanh = lambda t: F.gelu(t, approximate="tanh")     # noqa: E731
        self.act = {Activation.SILU: F.silu, Activation.GELU: F.gelu, Activation.GELU_TANH: tanh,
                    Activation.GELU_NEW: tanh, Activation.RELU: F.relu}[dims.activation]

    def forward(self, x):
        if self.fused:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(self.act(gate) * up)


class Block(nn.Module):
    """One pre-norm decoder block: attention and MLP, each with its residual add."""

    def __init__(self, dims: DecoderDims, dtype):
        super().__init__()
        self.input_layernorm = RMSNorm(dims.hidden_size, dims.rms_norm_eps, dtype)
        self.self_attn = Attention(dims, dtype)
        self.post_attention_layernorm = RMSNorm(dims.hidden_size, dims.rms_norm_eps, dtype)
        self.mlp = Mlp(dims, dtype)
        # Gemma-2 also normalises each sublayer's output before its residual add
        self.post_attn_norm = RMSNorm(dims.hidden_size, dims.rms_norm_eps, dtype) if dims.post_norms else None
        self.post_mlp_norm = RMSNorm(dims.hidden_size, dims.rms_norm_eps, dtype) if dims.post_norms else None

    def forward(self, x, cache, layer, cos, sin, mask):
        attn = self.self_attn(self.input_layernorm(x), cache, layer, cos, sin, mask)
        x = x + (attn if self.post_attn_norm is None else self.post_attn_norm(attn))
        mlp = self.mlp(self.post_attention_layernorm(x))
        return x + (mlp if self.post_mlp_norm is None else self.post_mlp_norm(mlp))


class Decoder(nn.Module):
    """Token ids [batch, seq] and a KV cache -> the logits of the last position [batch, vocab]."""

    cos: torch.Tensor       # rotary tables [positions, head_dim], registered as buffers below
    sin: torch.Tensor

    def __init__(self, dims: DecoderDims, dtype, max_positions: int):
        super().__init__()
        self.dims = dims
        self.embed_tokens = nn.Embedding(dims.vocab_size, dims.hidden_size, dtype=dtype)
        self.layers = nn.ModuleList(Block(dims, dtype) for _ in range(dims.layers))
        self.norm = RMSNorm(dims.hidden_size, dims.rms_norm_eps, dtype)
        self.lm_head = nn.Linear(dims.hidden_size, dims.vocab_size, bias=False, dtype=dtype)
        if dims.tied_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        inv = 1.0 / dims.rope_theta ** (torch.arange(0, dims.head_dim, 2, dtype=torch.float64) / dims.head_dim)
        angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos().to(dtype), persistent=False)
        self.register_buffer("sin", angles.sin().to(dtype), persistent=False)

    def forward(self, ids, cache: KvCache):
        seq, start = ids.shape[1], cache.length
        cos, sin = self.cos[start:start + seq], self.sin[start:start + seq]
        mask = _causal_mask(seq, start, self.dims.heads // self.dims.kv_heads, cache.dtype) if seq > 1 else None
        x = self.embed_tokens(ids)
        for n, block in enumerate(self.layers):
            x = block(x, cache, n, cos, sin, mask)
        cache.length += seq
        # only the last position's logits: the next token is all generation needs
        return self.lm_head(self.norm(x[:, -1, :]))


def _rope(t, cos, sin):
    half = t.shape[-1] // 2
    rotated = torch.cat([-t[..., half:], t[..., :half]], dim=-1)
    return t * cos + rotated * sin


def _causal_mask(seq: int, start: int, group: int, dtype):
    # query s (position start + s) sees keys 0 .. start + s; rows are (group member, query)
    keys = torch.arange(start + seq)
    allowed = keys[None, :] <= (start + torch.arange(seq))[:, None]
    mask = torch.zeros(seq, start + seq, dtype=dtype).masked_fill_(~allowed, float("-inf"))
    return mask.repeat(group, 1)
