"""Feedback collection: sample a policy's completions (``collect``) and have them labelled (``labelers``).

The rows written here (preference pairs or good/bad ratings) are what ``agents.supervised.reward_training``
learns a reward model from.
"""
