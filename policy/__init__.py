"""The Flax vision-language policy, GRPO and the G0/G1 recipe (not built yet: see the open issues)."""
