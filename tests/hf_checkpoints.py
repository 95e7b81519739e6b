"""Tiny random Qwen2-VL and Qwen2.5-VL checkpoints written by transformers, for the tests:
every tensor randomised (so that a wrong layout moves the logits by about 1), a small
byte-level BPE tokenizer in the Qwen2 layout with a chat template. Needs torch and
transformers (the `hf` extra); import it after `pytest.importorskip("torch")`."""

import numpy as np
import torch
import transformers

TEXT = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            rope_scaling=dict(type="mrope", mrope_section=[2, 3, 3]))
VISION = {
    "qwen2-vl": dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                     patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    "qwen2.5-vl": dict(depth=2, hidden_size=32, out_hidden_size=64, num_heads=2,
                       intermediate_size=48, patch_size=14, spatial_merge_size=2,
                       temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
}
TOKENS = dict(image_token_id=290, video_token_id=291, vision_start_token_id=292,
              vision_end_token_id=293)


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif part['type'] == 'text' %}"
    "{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>",
            "<|im_start|>", "<|im_end|>", "<|endoftext|>"]  # ids 290.., as TOKENS says


def save_tokenizer(out):
    """A small byte-level BPE in the Qwen2 layout (290 learnt entries, then Qwen's special
    tokens, a chat template), saved so that AutoTokenizer reads it as it would a real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    import jaxgym

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([jaxgym.make(g).instructions() for g in jaxgym.list_games()] * 4,
                            trainer)
    assert tok.get_vocab_size() == 290
    tok.add_special_tokens(SPECIALS)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                pad_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def randomised(model, seed=0):
    """Every tensor drawn afresh: norms 1 + 0.2 N, biases 0.15 N, matrices 2/sqrt(fan_in) N,
    embeddings 0.1 N (transformers' own init hides layout bugs under 1e-4)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name or "ln_q" in name:
                p.copy_(1 + 0.2 * noise if name.endswith("weight") else 0.15 * noise)
            elif name.endswith("bias"):
                p.copy_(0.15 * noise)
            elif "embed_tokens" in name:
                p.copy_(0.1 * noise)
            else:
                p.copy_(2 / np.sqrt(np.prod(p.shape[1:])) * noise)
    return model


def hf_model(variant, tied=True):
    if variant == "qwen2-vl":
        cls, cfg_cls = transformers.Qwen2VLForConditionalGeneration, transformers.Qwen2VLConfig
    else:
        cls = transformers.Qwen2_5_VLForConditionalGeneration
        cfg_cls = transformers.Qwen2_5_VLConfig
    cfg = cfg_cls(text_config=dict(TEXT, tie_word_embeddings=tied),
                  vision_config=VISION[variant], tie_word_embeddings=tied, **TOKENS)
    return randomised(cls(cfg).eval(), seed=len(variant) + tied)
