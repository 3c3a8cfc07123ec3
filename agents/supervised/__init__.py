"""Supervised stages of the pipeline: instruction tuning (``sft``) and reward-model training (``reward_training``).

Both minimise a loss over a fixed dataset with the same machinery (``training``: accelerator,
optimiser and schedule, resumable data order, logs, checkpoints) on rows tokenised exactly as the
envs tokenise (``data``).
"""
