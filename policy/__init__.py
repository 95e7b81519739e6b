"""The Flax vision-language policy (a Qwen2-VL-shaped VLM), its tokenizer, sampler and rewards,
the SFT cold start, GRPO, and the G0/G1 recipe's CLIs: policy.sft, policy.train, policy.evaluate,
policy.study."""
