"""Rules for the embedding, the output head and the scalar multipliers (gemma, granite...).

The transforms read which config field a scale comes from (and whether it multiplies or
divides) from the target's HF source, at the line the feature's evidence points to.
"""

from codegen.scaffold.rule import FromFeature, Rule

RULES = [
    Rule(
        id="no_padding_row",
        feature="embedding.padding_idx",
        values=(False,),
        transform="no_padding_row",
        description="the word table has no padding row (HF passes no padding_idx: gpt2)",
    ),
    Rule(
        id="extra_word_rows",
        feature="embedding.extra_rows",
        values=(True,),
        transform="extra_word_rows",
        params={"rows": FromFeature("embedding.extra_rows")},
        description="the word table rows taller than the head is wide: ids fed in, never"
        " predicted (nn.Embedding(config.vocab_size + 1, ...))",
    ),
    Rule(
        id="embedding_scale",
        feature="embedding.scale",
        values=(True,),
        transform="embedding_scale",
        description="embeddings times sqrt(dim) in the model dtype (gemma) or a config value",
    ),
    Rule(
        id="embedding_affine",
        feature="embedding.scale",
        values=("learned_affine",),
        transform="embedding_affine",
        params={"affine": FromFeature("embedding.learned_affine")},
        description="embeddings shifted and scaled by learned per-channel vectors before the"
        " first layer: (x + b) * s (zaya)",
    ),
    Rule(
        id="embedding_norm",
        feature="embedding.norm",
        values=(True,),
        transform="embedding_norm",
        params={"module": FromFeature("embedding.norm_module")},
        description="embeddings pass through a norm before the first layer (the final one, or"
        " their own: bloom)",
    ),
    Rule(
        id="attention_scale",
        feature="attention.scale",
        values=("custom",),
        transform="attention_scale",
        description="softmax scale from the config (granite multiplier, gemma2 scalar**-0.5)",
    ),
    Rule(
        id="unscaled_attention",
        feature="attention.scale",
        values=("none",),
        transform="unscaled_attention",
        description="attention scores enter the softmax unscaled: scale 1.0 (gpt_neo)",
    ),
    Rule(
        id="residual_scale",
        feature="block.residual_scale",
        values=(True, "depth_scaled", "learned_stream"),
        transform="residual_scale",
        params={
            "form": FromFeature("block.residual_scale"),
            "weights": FromFeature("block.stream_weights"),
        },
        description="sublayer outputs times a config multiplier before the residual add; or"
        " (depth_scaled) the k-th term of the residual sum times 1/sqrt(k), the sum so far"
        " times sqrt((k - 1) / k); or (learned_stream) the stream times a learned"
        " per-channel vector before each add (doge)",
    ),
    Rule(
        id="residual_affine",
        feature="block.residual_scale",
        values=("affine",),
        transform="residual_affine",
        params={"modules": FromFeature("block.residual_affine")},
        description="each residual add a module of learned per-channel maps on both operands:"
        " (out + b) * s + (x + c) * t (zaya)",
    ),
    Rule(
        # after the placement rules (they write the attention's residual add and its norms)
        id="low_rank_branch",
        feature="block.low_rank_branch",
        values=(True,),
        transform="low_rank_branch",
        params={"branch": FromFeature("block.low_rank_branch")},
        description="a low-rank branch x + norm(up(down(x))) on the attention's normed input,"
        " summed with the attention's residual sum, that sum divided by a constant"
        " (gemma3n's Laurel: sqrt(2))",
    ),
    Rule(
        # after the embedding and residual rules: it casts what they compute
        id="fp32_residual",
        feature="block.residual_fp32",
        values=(True,),
        transform="fp32_residual",
        description="the residual stream kept in fp32 in any model dtype: the embeddings cast"
        " before the first layer, each norm reading the stream cast to its weight's dtype"
        " (zaya)",
    ),
    Rule(
        # after the placement rules (they write the block's residual adds) and before
        # keep_fp32_params (its adapter rows name the modules' parameters)
        id="hyper_connections",
        feature="block.hyper_connections",
        values=(True,),
        transform="hyper_connections",
        params={"hyper": FromFeature("block.hyper_connections")},
        description="the residual stream widened into parallel streams: each sublayer reads"
        " its input through a learned collapse and writes its output back with learned"
        " weights, the streams mixed by a Sinkhorn-normalised matrix (DeepSeek-V4's mHC);"
        " the streams collapsed before the final norm",
    ),
    Rule(
        # before logit_softcap and logit_scale: they act on the cut logits, fewer columns
        id="vocab_crop",
        feature="head.vocab_crop",
        values=(True,),
        transform="vocab_crop",
        params={"field": FromFeature("head.vocab_crop")},
        description="logits cut to a config field's width (the head stored padded past the"
        " vocabulary; None keeps every column: inkling's unpadded_vocab_size)",
    ),
    Rule(
        id="logit_softcap",
        feature="head.logit_softcap",
        values=(True,),
        transform="logit_softcap",
        description="final logits soft-capped: tanh(logits / cap) * cap (gemma2)",
        # the cap is None in some configs (gemma4's default): the package reads the field
        # and caps only when it is set, so it realises both settings
        switch="final_logit_softcapping",
    ),
    Rule(
        id="head_bias",
        feature="head.bias",
        values=(True,),
        transform="set_head_bias",
        description="the output head adds a bias to the logits (mapped from the checkpoint)",
        params={"key": FromFeature("head.bias_key"), "projection": FromFeature("head.projection")},
    ),
    Rule(
        # after head_bias: it points the bias row at the key HF stores it under
        id="head_transform",
        feature="head.transform",
        values=(True,),
        transform="head_transform",
        description="BERT's prediction head: dense, activation, norm before the projection",
        params={
            "dense": FromFeature("head.transform_dense"),
            "norm": FromFeature("head.transform_norm"),
            "activation": FromFeature("head.transform_activation"),
            "activation_field": FromFeature("head.transform_activation_field"),
            "dense_bias": FromFeature("head.transform_dense_bias"),
            "projection": FromFeature("head.projection"),
            "bias_key": FromFeature("head.bias_key"),
            "width": FromFeature("head.transform_width"),
        },
    ),
    Rule(
        # after head_bias and head_transform: a bias-free head takes the scale on its input
        id="logit_scale",
        feature="head.logit_scale",
        values=(True,),
        transform="logit_scale",
        description="final logits multiplied (cohere) or divided (granite) by a config value",
    ),
    Rule(
        id="embedding_init_std",
        feature="embedding.init_std",
        values=(True,),
        transform="embedding_init_std",
        params={"std": FromFeature("embedding.init_std")},
        description="token embeddings start at HF's own std for them, not initializer_range",
    ),
    Rule(
        id="drop_unused_keys",
        feature="state_dict.unused_keys",
        values=(True,),
        transform="drop_unused_keys",
        params={"keys": FromFeature("state_dict.unused_keys")},
        description="checkpoint weights of modules the logits never read (BigBird's pooler)"
        " dropped on load",
    ),
    Rule(
        # after the attention and MoE rules: their adapter rows name the kept parameters
        id="keep_fp32_params",
        feature="state_dict.fp32_keys",
        values=(True, "router_bias"),
        transform="keep_fp32_params",
        params={"keys": FromFeature("state_dict.fp32_keys")},
        description=(
            "parameters HF loads in fp32 (_keep_in_fp32_modules_strict: flint's router weight"
            " and sinks) stay fp32 when the model is cast to bf16"
        ),
    ),
]
